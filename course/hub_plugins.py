"""The two JupyterHub classes ``deploy/hub/jupyterhub_config.py`` plugs in (see ``course.hub`` for the design).

``RosterAuthenticator``: the people on the roster, each with their own password (scrypt hashes in the hub's
private folder; ``course hub`` makes them and hands the new ones to the instructor). Instructors are admins.
``CourseSpawner``: a ``LocalProcessSpawner`` whose servers run as the person's own OS user inside a
bubblewrap mount namespace (``course.hub.sandbox_command``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from jupyterhub.auth import Authenticator
from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Unicode, default

from course.hub import HubLayout, check_password, load_roster

__all__ = ["CourseSpawner", "RosterAuthenticator"]


def _traits():
    return (
        Unicode(help="the hub's state folder (course.hub.HubLayout)").tag(config=True),
        Unicode(help="the roster YAML file").tag(config=True),
    )


class _RosterMixin:
    """The hub's layout and roster, for classes that declare ``state`` and ``roster_file`` traits."""

    @property
    def layout(self) -> HubLayout:
        return HubLayout(Path(self.state))

    @property
    def roster(self):
        return load_roster(self.roster_file)


class RosterAuthenticator(_RosterMixin, Authenticator):
    """Log in with a roster name and that person's own password."""

    state, roster_file = _traits()

    @default("allowed_users")
    def _allowed(self):
        return set(self.roster.everyone)

    @default("admin_users")
    def _admins(self):
        return set(self.roster.instructors)

    async def authenticate(self, handler, data):
        name, password = (data or {}).get("username", ""), (data or {}).get("password", "")
        if name in self.roster.everyone and check_password(self.layout, name, password):
            return name
        self.log.warning("failed login for %r", name)
        return None


class CourseSpawner(_RosterMixin, LocalProcessSpawner):
    """Each server: bwrap as root shows only the allowed folders, then setpriv drops to the person's uid."""

    state, roster_file = _traits()

    singleuser = Unicode(help="absolute path of jupyterhub-singleuser in the course venv").tag(config=True)

    def make_preexec_fn(self, name):
        return None  # bwrap starts as root (it must mount); setpriv inside drops to the user's uid

    def user_env(self, env):
        env = super().user_env(env)
        role = "staff" if self.user.name in self.roster.staff else "student"
        env["JUPYTER_CONFIG_PATH"] = str(self.layout.config(role))
        env["PATH"] = f"{os.path.dirname(self.singleuser)}:/usr/local/bin:/usr/bin:/bin"
        for key in ("COURSE_DATA", "COURSE_OFFLINE"):
            if os.environ.get(key):
                env[key] = os.environ[key]
        return env

    async def start(self):
        from course.hub import sandbox_command

        staff = self.user.name in self.roster.staff
        layout = self.layout
        if os.environ.get("COURSE_DATA"):
            layout = HubLayout(layout.state, layout.root, (os.environ["COURSE_DATA"],))
        self.cmd = sandbox_command(layout, self.user.name, staff, [self.singleuser])
        return await super().start()

    async def _signal(self, sig):
        """Signal the whole process group (bwrap and the server inside it), not only bwrap."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    async def stop(self, now=False):
        pid = self.pid
        await super().stop(now=now)
        if pid:
            with contextlib.suppress(ProcessLookupError):  # nothing of this server may outlive it
                os.killpg(pid, signal.SIGKILL)
