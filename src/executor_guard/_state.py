"""The one owner of executor_guard's process-wide state: its parts, one reset, one after-fork.

Each module that keeps state (the active guard, the patches, the record
tables, the caches, the start-up flag, the exit service) keeps it in one small
object of its own and registers it here under a name. :data:`STATE` then
offers the two operations every part must support:

* ``reset()``: back to a freshly imported package (tests);
* ``after_fork()``: in a forked child, replace every lock and empty every table,
  since another thread of the parent may have held a lock at the fork and does
  not exist in the child to release it.

It also owns :attr:`State.importing` (an :class:`Importing`), entered around
the imports the guard makes only when it reports (its report modules,
structlog, psutil): a fork waits for one under way in another thread, because
a module's import lock held by another thread at the fork is never released in
the child, whose next report would wait for ever.

Parts are registered, not imported, so this module imports nothing of ours and
every other module may import it without a cycle.
"""

from __future__ import annotations

import _thread
import os
from _weakref import ref as _ref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from typing import Any, Protocol

    class Part(Protocol):
        """What a module's state object offers the state owner."""

        def reset(self) -> None: ...

        def after_fork(self) -> None: ...


#: Seconds a fork waits at most for report-time imports in other threads.
_FORK_WAIT = 5.0


#: Threads with a record before the records of ended threads are dropped.
_PRUNE_AT = 64


class _Block:
    """One report-time ``with`` block under way: alive as long as the block is.

    The ``with`` statement holds it until the block ends, so an exit lost to a
    signal handler's exception leaves a dead weak reference behind, not an
    entry that looks alive.
    """

    __slots__ = ("__weakref__", "imports")

    def __init__(self, imports: Importing) -> None:
        self.imports = imports

    def __enter__(self) -> None:
        self.imports.mine().append(_ref(self))

    def __exit__(self, *exc_info: object) -> None:
        blocks = self.imports.mine()
        blocks[:] = [block for block in list(blocks) if block() not in (None, self)]


class Importing:
    """The report-time imports under way, per thread, so that a fork can wait for them.

    Not a lock: no thread ever waits here for another thread's import (the
    import system orders those), so a report can never wait for a thread that
    is waiting for it, and an exit lost to a signal handler's exception keeps
    nothing held. ``with STATE.importing():`` goes around each report-time import.
    """

    def __init__(self) -> None:
        #: Thread ident -> weak references to its blocks under way. A thread's
        #: list is not removed when its blocks end, so a handler's block never
        #: orphans the block it interrupted (lists without a live block are
        #: dropped only once many threads have one).
        self.threads: dict[int, list[Any]] = {}

    def __call__(self) -> _Block:
        return _Block(self)

    def mine(self) -> list[Any]:
        """This thread's blocks (the list made on first use)."""
        ident = _thread.get_ident()
        found = self.threads.get(ident)
        if found is None:
            if len(self.threads) >= _PRUNE_AT:
                self._prune()
            found = self.threads.setdefault(ident, [])
        return found

    def _prune(self) -> None:
        """Forget the lists that hold no block under way (those of ended threads among them)."""
        for ident, blocks in list(self.threads.items()):
            if not _live(blocks):
                self.threads.pop(ident, None)

    def others(self) -> bool:
        """Whether a thread other than this one is inside a report-time block now."""
        # Not sys._current_frames(): called from a fork hook, it left 3.9's
        # forked process-pool workers unable to answer (CPython's
        # test_no_stale_references, fork start method).
        me = _thread.get_ident()
        return any(ident != me and _live(blocks) for ident, blocks in list(self.threads.items()))


def _live(blocks: list[Any]) -> bool:
    """Whether one of ``blocks`` (weak references) is still under way."""
    return any(block() is not None for block in list(blocks))


class State:
    """Every part of the package's global state, by name, in registration order."""

    def __init__(self) -> None:
        self.parts: dict[str, Part] = {}
        self._fork_hook = False
        #: Entered around every import made at report time (see the module docstring).
        self.importing = Importing()

    def register(self, name: str, part: Part) -> None:
        """Make ``part`` one of the parts reset and re-forked together."""
        self.parts[name] = part

    def reset(self) -> None:
        """Reset every part, last registered first (users before what they use)."""
        for part in reversed(list(self.parts.values())):
            part.reset()

    def before_fork(self) -> None:
        """Before a fork: wait (a few seconds at most) for report-time imports in other threads."""
        importing = self.importing
        if not importing.others():
            return
        import time

        # Bounded: a fork is delayed by an import, never stopped by one.
        deadline = time.monotonic() + _FORK_WAIT
        while importing.others() and time.monotonic() < deadline:
            time.sleep(0.002)

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
