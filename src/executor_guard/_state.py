"""The one owner of executor_guard's process-wide state: its parts, one reset, one after-fork.

Each module that keeps state (the active guard, the patches, the record
tables, the caches, the start-up flag, the exit service) keeps it in one small
object of its own and registers it here under a name. :data:`STATE` then
offers the two operations every part must support:

* ``reset()``: back to a freshly imported package (tests);
* ``after_fork()``: in a forked child, replace every lock and empty every table,
  since another thread of the parent may have held a lock at the fork and does
  not exist in the child to release it.

It also owns :attr:`State.importing`, the lock around the imports the guard
makes only when it reports (its report modules, structlog, psutil): a fork
waits for one under way, because a module's import lock held by another thread
at the fork is never released in the child, whose next report would wait for ever.

Parts are registered, not imported, so this module imports nothing of ours and
every other module may import it without a cycle.
"""

from __future__ import annotations

import _thread
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from typing import Protocol

    class Part(Protocol):
        """What a module's state object offers the state owner."""

        def reset(self) -> None: ...

        def after_fork(self) -> None: ...


#: Seconds a fork waits at most for a report-time import in another thread.
_FORK_WAIT = 5.0


class State:
    """Every part of the package's global state, by name, in registration order."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        self._fork_hook = False
        #: Held around every import made at report time (see the module docstring).
        self.importing = _thread.RLock()

    def register(self, name: str, part: Part) -> None:
        """Make ``part`` one of the parts reset and re-forked together."""
        self.parts[name] = part

    def reset(self) -> None:
        """Reset every part, last registered first (users before what they use)."""
        for part in reversed(list(self.parts.values())):
            part.reset()

    def before_fork(self) -> None:
        """Before a fork: wait (a few seconds at most) for a report-time import under way."""
        lock = self.importing
        if lock._is_owned():  # type: ignore[attr-defined]
            return  # this thread's own import (a handler forking): nothing to wait for
        try:
            # Bounded: a fork is delayed by an import, never stopped by one.
            lock.acquire(timeout=_FORK_WAIT)
        finally:
            # Released here even when a signal handler raised right after the acquire.
            if lock._is_owned():  # type: ignore[attr-defined]
                lock.release()

    def after_fork(self) -> None:
        """In a forked child: every part starts clean, with new locks."""
        self.importing = _thread.RLock()
        for part in list(self.parts.values()):
            try:
                part.after_fork()
            except Exception:  # the child must live on, guarded or not
                pass

    def watch_forks(self) -> None:
        """Register :meth:`after_fork` with the interpreter, once per process."""
        if not self._fork_hook and hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self.before_fork, after_in_child=self.after_fork)
            self._fork_hook = True


STATE = State()
