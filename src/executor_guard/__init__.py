"""executor_guard: find code that creates ``concurrent.futures`` pools over and over.

Patch the executor classes in place, record every pool's call site, stack and
shutdown, and warn, log or raise when one call site creates pools repeatedly.
See README.md for the ways in: the launcher, the ``EXECUTOR_GUARD``
environment variable, the Python API and the pytest plugin.

PYTEST_DONT_REWRITE: with ``EXECUTOR_GUARD`` set, the start-up hook imports
this package before pytest loads our plugin; the marker tells pytest not to
warn that it cannot rewrite it (there is nothing to rewrite: no asserts).
"""

from ._guard import Guard, guarded, install, is_installed, report, reset, uninstall
from ._version import __version__
from .exceptions import (
    ConfigError,
    ExecutorChurnError,
    ExecutorChurnWarning,
    ExecutorGuardError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from ._report import Report, ReportFileError


def __getattr__(name: str) -> object:
    # Report and ReportFileError live in _report, which imports json and
    # tempfile: load it when first asked for, not at interpreter start-up.
    if name in ("Report", "ReportFileError"):
        from ._state import STATE

        with STATE.importing():  # report-time imports: see _state
            from . import _report

        return getattr(_report, name)
    raise AttributeError(f"module 'executor_guard' has no attribute {name!r}")


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
