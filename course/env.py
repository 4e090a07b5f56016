"""Run-size switches read from the environment, in one place."""

from __future__ import annotations

import os

__all__ = ["ENV_FULL", "full_runs"]

ENV_FULL = "COURSE_FULL"


def full_runs() -> bool:
    """True when COURSE_FULL=1: notebooks run the full-size experiments the text describes.

    The default (quick) runs keep every notebook under two minutes on a 2-core CPU.
    """
    value = os.environ.get(ENV_FULL, "").strip().lower()
    if value not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ValueError(f"{ENV_FULL} must be 1 or 0, got {value!r}")
    return value in ("1", "true", "yes")
