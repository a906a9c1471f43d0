"""One-line messages from the guard about itself.

The host program comes first: an error inside the guard is reported once per
kind, on one line, and never propagates into the host.
"""

from __future__ import annotations

import sys
import threading

_said: set[str] = set()
_lock = threading.Lock()


def say(message: str) -> None:
    """Write ``executor_guard: message`` to stderr, never raising."""
    try:
        stream = sys.stderr if sys.stderr is not None else sys.__stderr__
        if stream is not None:
            stream.write(f"executor_guard: {message}\n")
            stream.flush()
    except Exception:
        pass


def internal_error(where: str, exc: BaseException) -> None:
    """Report a failure of the guard itself, once per ``where``."""
    with _lock:
        if where in _said:
            return
        _said.add(where)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    say(f"internal error while {where} ({detail}); the program continues unguarded there")


def forget() -> None:
    """Allow every message again (tests)."""
    with _lock:
        _said.clear()
