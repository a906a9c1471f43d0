"""Small helpers shared by tests: source lines of marked statements, waiting for files."""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Callable


def line_of(function: Callable[..., Any], marker: str) -> int:
    """The line number of the first line of ``function`` containing ``marker``."""
    lines, start = inspect.getsourcelines(function)
    for offset, text in enumerate(lines):
        if marker in text:
            return start + offset
    raise AssertionError(f"{marker!r} not found in {function.__name__}")


def wait_for_file(path: Path, seconds: float = 30) -> bool:
    """Poll until ``path`` exists (a report written by another process); False on timeout."""
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.exists()
