"""The one owner of executor_guard's process-wide state: its parts, one reset, one after-fork.

Each module that keeps state (the active guard, the patches, the record
tables, the caches, the start-up flag, the exit service) keeps it in one small
object of its own and registers it here under a name. :data:`STATE` then
offers the two operations every part must support:

* ``reset()``: back to a freshly imported package (tests);
* ``after_fork()``: in a forked child, replace every lock and empty every table,
  since another thread of the parent may have held a lock at the fork and does
  not exist in the child to release it.

It also owns :attr:`State.importing` (an :class:`Importing`), held around the
imports the guard makes only when it reports (its report modules, structlog,
psutil): a fork waits for one under way, because a module's import lock held
by another thread at the fork is never released in the child, whose next
report would wait for ever. A signal handler that lands inside such an import
cannot report in that thread (the half-imported module has no names yet):
what it has to do waits, in :meth:`Importing.defer`, until the import is done.

Parts are registered, not imported, so this module imports nothing of ours and
every other module may import it without a cycle.
"""

from __future__ import annotations

import _thread
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class Part(Protocol):
        """What a module's state object offers the state owner."""

        def reset(self) -> None: ...

        def after_fork(self) -> None: ...


#: Seconds a fork waits at most for a report-time import in another thread.
_FORK_WAIT = 5.0


class Importing:
    """The report-time import lock, and what waits for the imports this thread is making."""

    def __init__(self) -> None:
        self.lock = _thread.RLock()
        self.deferred: list[Callable[[], object]] = []

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.lock.release()  # first: nothing may run between the body and the release
        if self.deferred and not self.lock._is_owned():  # type: ignore[attr-defined]
            self._run_deferred()

    def owned(self) -> bool:
        """Whether this thread is inside a report-time import (re-entered by a handler)."""
        return bool(self.lock._is_owned())  # type: ignore[attr-defined]

    def defer(self, action: Callable[[], object]) -> bool:
        """Run ``action`` once this thread's report-time import is done; False if none is.

        For a signal handler (or a finalizer) that runs in the middle of such
        an import: it returns, the import goes on, and ``action`` runs right
        after it, in the same thread.
        """
        if not self.owned():
            return False
        self.deferred.append(action)
        return True

    def _run_deferred(self) -> None:
        deferred = self.deferred
        while deferred:
            try:
                action = deferred.pop(0)
            except IndexError:  # another thread ran it meanwhile
                return
            action()


class State:
    """Every part of the package's global state, by name, in registration order."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        self._fork_hook = False
        #: Held around every import made at report time (see the module docstring).
        self.importing = Importing()

    def register(self, name: str, part: Part) -> None:
        """Make ``part`` one of the parts reset and re-forked together."""
        self.parts[name] = part

    def reset(self) -> None:
        """Reset every part, last registered first (users before what they use)."""
        for part in reversed(list(self.parts.values())):
            part.reset()

    def before_fork(self) -> None:
        """Before a fork: wait (a few seconds at most) for a report-time import under way."""
        lock = self.importing.lock
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
        self.importing = Importing()
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
