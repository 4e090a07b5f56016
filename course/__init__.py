"""Deep Dive into Convolutions: data, plotting, notebook and grading tools for the course.

Nothing graded lives here: the reference implementations are the solution cells of ``solutions/``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("course")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
