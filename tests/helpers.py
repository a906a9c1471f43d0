"""Small helpers shared by tests: source lines of marked statements."""

from __future__ import annotations

import inspect
from typing import Any, Callable


def line_of(function: Callable[..., Any], marker: str) -> int:
    """The line number of the first line of ``function`` containing ``marker``."""
    lines, start = inspect.getsourcelines(function)
    for offset, text in enumerate(lines):
        if marker in text:
            return start + offset
    raise AssertionError(f"{marker!r} not found in {function.__name__}")
