"""Small helpers shared by tests: source lines, waiting for files, the hooks without frames."""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from executor_guard import _config, _registry
from executor_guard._policy import Crossing, Policy
from executor_guard._registry import Record, Registry


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


def sigterm_on_import(module: str) -> str:
    """Source to end a scenario with: the next import of ``module`` sends this process SIGTERM.

    Its handler then runs in the importing thread, inside whatever imported
    ``module`` (the report at exit, the launcher's ending). ``module`` must
    not be imported yet when the scenario reaches this code.
    """
    return f"""
import os as _os, signal as _signal, sys as _sys

class SigtermOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            _sys.meta_path.remove(self)
            _os.kill(_os.getpid(), _signal.SIGTERM)
        return None

assert {module!r} not in _sys.modules
_sys.meta_path.insert(0, SigtermOnImport())
"""


KEY = ("/app/service.py", 87, "listener")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """What the hooks do for one creation, without frames: site, policy, record."""

    def __init__(self, config: _config.Config, clock: Optional[Clock] = None) -> None:
        self.clock = clock or Clock()
        self.registry = Registry(clock=self.clock)
        self.policy = Policy(config)

    def create(
        self,
        pool: object,
        key: tuple[str, int, str] = KEY,
        stack: Optional[tuple[tuple[str, int, str], ...]] = None,
    ) -> tuple[Optional[Record], Optional[Crossing]]:
        at = self.clock()
        site = self.registry.site(key, key, "svc", False, at, self.policy.configure_site)
        if site is None:
            return None, None
        attempt = next(site.attempts) - site.failed
        crossing = self.policy.check(site, attempt, at) if attempt >= site.due else None
        if crossing is not None and crossing.refused:
            _registry.refused(site, at)
            return None, crossing
        record = _registry.new_record(
            pool, site, at, threading.current_thread().name, type(pool).__name__, None
        )
        if stack is not None:
            record.extra = (stack, None)
        _registry.built(record)
        return record, crossing

    def close(
        self,
        pool: object,
        mode: str,
        cancel: bool = False,
        pending: bool = False,
        threads: Optional[tuple[threading.Thread, ...]] = None,
    ) -> None:
        """Record a shutdown as the hooks do: the first one pops the pool's record."""
        record = vars(pool).get(_registry.RECORD_ATTR)
        if record is None or record.mode is not None:
            return
        if mode in ("wait", "context") and not cancel:
            _registry.end(record, mode)
        else:
            _registry.end_with(record, mode, cancel, pending, threads)

    def site(self) -> dict[str, Any]:
        return self.registry.snapshot().sites[0]
