"""executor_guard: find code that creates ``concurrent.futures`` pools over and over.

Patch the executor classes in place, record every pool's call site, stack and
shutdown, and warn, log or raise when one call site creates pools repeatedly.
See README.md for the three ways in: the launcher, the ``EXECUTOR_GUARD``
environment variable and the pytest plugin.
"""

from ._guard import Guard, guarded, install, is_installed, report, reset, uninstall
from ._report import Report, ReportFileError
from ._version import __version__
from .exceptions import (
    ConfigError,
    ExecutorChurnError,
    ExecutorChurnWarning,
    ExecutorGuardError,
)

__all__ = [
    "ConfigError",
    "ExecutorChurnError",
    "ExecutorChurnWarning",
    "ExecutorGuardError",
    "Guard",
    "Report",
    "ReportFileError",
    "__version__",
    "guarded",
    "install",
    "is_installed",
    "report",
    "reset",
    "uninstall",
]
