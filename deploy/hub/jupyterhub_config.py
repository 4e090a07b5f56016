"""JupyterHub configuration for a class on one machine (started by `course hub`).

`course hub` sets the environment variables read below and runs `jupyterhub -f` on this file; to run it
by hand, set them yourself (see docs/instructor.md, "A class on JupyterHub"). Everything listens on
127.0.0.1 unless COURSE_HUB_BIND says otherwise: put TLS (a reverse proxy) in front before opening it.
"""

import os
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (injected by traitlets when JupyterHub loads this file)

STATE = Path(os.environ["COURSE_HUB_STATE"])  # folder of course.hub.HubLayout
ROSTER = os.environ["COURSE_HUB_ROSTER"]
VENV_BIN = Path(sys.executable).parent
PRIVATE = STATE / "hub"  # root only: database, cookie secret, proxy pid

# --- network: loopback by default ----------
c.JupyterHub.bind_url = os.environ.get("COURSE_HUB_BIND", "http://127.0.0.1:8000")
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("COURSE_HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('COURSE_HUB_PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.command = [os.environ.get("COURSE_HUB_PROXY") or shutil.which("configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(PRIVATE / "proxy.pid")

# --- state: nothing in the working directory ----------
c.JupyterHub.db_url = f"sqlite:///{PRIVATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(PRIVATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(PRIVATE / "jupyterhub.pid")

# --- who may log in: the roster, each person with their own password ----------
# For an institution, replace these three lines with its single sign-on, e.g. (pip install oauthenticator)
#   c.JupyterHub.authenticator_class = "generic-oauth"   # + client id/secret, authorize/token/userdata URLs
# or LTI 1.3 from the learning platform (pip install jupyterhub-ltiauthenticator):
#   c.JupyterHub.authenticator_class = "ltiauthenticator.lti13.auth.LTI13Authenticator"
# and keep allowed_users/admin_users from the roster (RosterAuthenticator's defaults show how).
c.JupyterHub.authenticator_class = "course.hub_plugins.RosterAuthenticator"
c.RosterAuthenticator.state = str(STATE)
c.RosterAuthenticator.roster_file = ROSTER

# --- each server: its own OS user, inside a mount namespace (see course/hub.py) ----------
c.JupyterHub.spawner_class = "course.hub_plugins.CourseSpawner"
c.CourseSpawner.state = str(STATE)
c.CourseSpawner.roster_file = ROSTER
c.CourseSpawner.singleuser = str(VENV_BIN / "jupyterhub-singleuser")
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.mem_limit = os.environ.get("COURSE_HUB_MEM_LIMIT", "4G")  # read by the server (resource display)
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# --- the hub's own API: an optional service token for scripts (tests, the instructor's tools) ----------
if os.environ.get("COURSE_HUB_SERVICE_TOKEN"):
    c.JupyterHub.services = [{"name": "course-admin", "api_token": os.environ["COURSE_HUB_SERVICE_TOKEN"]}]
    c.JupyterHub.load_roles = [
        {"name": "course-admin", "scopes": ["admin:users", "admin:servers", "tokens"], "services": ["course-admin"]}
    ]
