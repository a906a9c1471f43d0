"""The exceptions and the warning that executor_guard raises or emits.

They live in a public module so that warning filters can name them:
``-W error::executor_guard.ExecutorChurnWarning`` works as well as
``-W error::executor_guard.exceptions.ExecutorChurnWarning``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ExecutorChurnError",
    "ExecutorChurnWarning",
    "ExecutorGuardError",
]


class ExecutorGuardError(Exception):
    """Base class of every exception executor_guard raises on purpose."""


class ConfigError(ExecutorGuardError, ValueError):
    """A configuration value is invalid.

    ``source`` names where the value came from (``--threshold``,
    ``EXECUTOR_GUARD_THRESHOLD``, ``threshold=``) and ``value`` is the value as
    given, so a message can point at the exact thing to fix.
    """

    def __init__(self, source: str, value: object, expected: str) -> None:
        self.source = source
        self.value = value
        self.expected = expected
        super().__init__(f"{source}: invalid value {value!r} ({expected})")


class ExecutorChurnError(ExecutorGuardError):
    """Raised in ``raise`` mode from the constructor call that crossed the threshold.

    The pool has not been built when this is raised: no thread or process was
    started for it.
    """

    def __init__(self, message: str, *, site: str, attempts: int, threshold: int) -> None:
        self.site = site
        self.attempts = attempts
        self.threshold = threshold
        super().__init__(message)


class ExecutorChurnWarning(ResourceWarning):
    """Emitted in ``warn`` mode, attributed to the call site that creates pools repeatedly."""
