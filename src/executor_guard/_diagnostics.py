"""One-line messages from the guard about itself, and whose an exception is.

The host program comes first: an error inside the guard is reported once per
kind, on one line, and never propagates into the host. But an exception that
belongs to the program (raised by one of its signal handlers while our code
ran, such as a SIGALRM timeout) must reach the program unchanged:
:func:`is_ours` tells the two apart.
"""

from __future__ import annotations

import os
import sys

from ._state import STATE

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
#: The libraries the guard calls when it reports: their failures are ours too.
_DEPENDENCIES = ("structlog", "psutil", "opentelemetry")


class _Said:
    """The kinds of internal error already reported (once each)."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()

    def reset(self) -> None:
        self.kinds.clear()

    def after_fork(self) -> None:
        """Nothing to do: no lock (a set's add is atomic)."""


_SAID = _Said()
STATE.register("diagnostics", _SAID)


def say(message: str) -> None:
    """Write ``executor_guard: message`` to stderr, never raising."""
    try:
        stream = sys.stderr if sys.stderr is not None else sys.__stderr__
        if stream is not None:
            stream.write(f"executor_guard: {message}\n")
            stream.flush()
    except Exception:
        pass


def is_ours(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by the guard's own code (or what it called).

    Every frame it passed through must be ours, the standard library's or
    one of the libraries we call to report (structlog, psutil). A
    signal handler of the program runs as a frame of the program's own code
    (application or installed library), so its exceptions are not ours.
    ``KeyboardInterrupt`` and ``SystemExit`` are never caught at all.
    """
    if not isinstance(exc, Exception):
        return False
    ours = [_PACKAGE_DIR, "<executor_guard", "<frozen"]
    for name in _DEPENDENCIES:
        module = sys.modules.get(name)
        location = getattr(module, "__file__", None)
        if isinstance(location, str):
            ours.append(os.path.dirname(os.path.abspath(location)) + os.sep)
    prefixes = tuple(ours)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (
            filename.startswith(prefixes)
            or (filename.startswith(_STDLIB_DIR) and "-packages" not in filename)
        ):
            return False
        tb = tb.tb_next
    return True


def internal_error(where: str, exc: BaseException) -> None:
    """Report a failure of the guard itself, once per ``where``."""
    kinds = _SAID.kinds
    if where in kinds:
        return
    kinds.add(where)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    say(f"internal error while {where} ({detail}); the program continues unguarded there")


def forget() -> None:
    """Allow every message again (tests)."""
    _SAID.reset()
