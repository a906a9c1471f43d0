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
the child, whose next report would wait for ever. A signal handler that lands
inside such an import in its own thread cannot report there (the half-imported
module has no names yet): what it has to do waits, in :meth:`Importing.defer`,
until the import is done.

Parts are registered, not imported, so this module imports nothing of ours and
every other module may import it without a cycle.
"""

from __future__ import annotations

import _thread
import os
import sys
from _weakref import ref as _ref

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, Optional, Protocol

    class Part(Protocol):
        """What a module's state object offers the state owner."""

        def reset(self) -> None: ...

        def after_fork(self) -> None: ...


#: Seconds a fork waits at most for report-time imports in other threads.
_FORK_WAIT = 5.0


#: Threads with a record before the records of ended threads are dropped.
_PRUNE_AT = 64

#: What the report-time ``with`` blocks import (name prefixes): one of these
#: half-initialised is what a signal handler landing in such a block must not use.
REPORT_TIME_MODULES = (
    "executor_guard.",
    "importlib.metadata",
    "json",
    "logging",
    "psutil",
    "structlog",
    "tempfile",
)


class _Block:
    """One report-time ``with`` block under way: alive exactly as long as the block is.

    The ``with`` statement holds it until the block ends, so an exit lost to a
    signal handler's exception leaves a dead weak reference, never an entry
    that looks alive.
    """

    __slots__ = ("__weakref__", "code", "imports")

    def __init__(self, imports: Importing) -> None:
        self.imports = imports
        self.code: object = None

    def __enter__(self) -> None:
        self.code = sys._getframe(1).f_code
        self.imports.mine().blocks.append(_ref(self))

    def __exit__(self, *exc_info: object) -> None:
        mine = self.imports.mine()
        mine.blocks[:] = [block for block in mine.blocks if block() not in (None, self)]
        if mine.deferred and not mine.under_way(sys._getframe(1)):
            mine.run_deferred()


class _Thread:
    """One thread's report-time blocks (weakly) and what waits for them; never removed
    while the thread may still use it, so a handler's block can never orphan another's."""

    __slots__ = ("blocks", "deferred")

    def __init__(self) -> None:
        self.blocks: list[Any] = []
        self.deferred: list[Callable[[], object]] = []

    def under_way(self, frame: Optional[FrameType]) -> bool:
        """Whether one of this thread's blocks is running on the stack that ``frame`` is on."""
        codes = set()
        for reference in list(self.blocks):
            block = reference()
            if block is not None:
                codes.add(block.code)
        while codes and frame is not None:
            if frame.f_code in codes:
                return True
            frame = frame.f_back
        return False

    def run_deferred(self) -> None:
        deferred = self.deferred
        while deferred:
            try:
                action = deferred.pop(0)
            except IndexError:  # a handler ran it meanwhile
                return
            action()


class Importing:
    """The report-time imports under way, per thread, and what waits for them.

    Not a lock: no thread ever waits here for another thread's import (the
    import system orders those), so a report can never wait for a thread that
    is waiting for it, and an exit lost to a signal handler's exception keeps
    nothing held. ``with STATE.importing():`` around each report-time import.
    """

    def __init__(self) -> None:
        self.threads: dict[int, _Thread] = {}

    def __call__(self) -> _Block:
        return _Block(self)

    def mine(self) -> _Thread:
        """This thread's record (made on first use)."""
        ident = _thread.get_ident()
        found = self.threads.get(ident)
        if found is None:
            if len(self.threads) >= _PRUNE_AT:
                self._prune()
            found = self.threads.setdefault(ident, _Thread())
        return found

    def _prune(self) -> None:
        """Forget the records of threads that have ended (only theirs: see :class:`_Thread`)."""
        alive = sys._current_frames()
        for ident in [i for i in list(self.threads) if i not in alive]:
            self.threads.pop(ident, None)

    def others(self) -> bool:
        """Whether a thread other than this one is inside a report-time block now."""
        me = _thread.get_ident()
        current = sys._current_frames()
        for ident, record in list(self.threads.items()):
            if ident != me and record.under_way(current.get(ident)):
                return True
        return False

    def defer(self, action: Callable[[], object]) -> bool:
        """Run ``action`` once this thread's report-time import is done; False if none is.

        For a signal handler (or a finalizer) that lands inside such an import,
        in the same thread, while a module it needs is half initialised: it
        returns, the import goes on, and ``action`` runs right after it, in
        this thread. Anywhere else (another thread importing, nothing under
        way, an entry left by a lost exit) the handler acts at once.
        """
        try:
            mine = self.threads.get(_thread.get_ident())
            if mine is None or not mine.under_way(sys._getframe(1)) or not _half_imported():
                return False
        except Exception:  # never into the handler that asked: it acts at once
            return False
        mine.deferred.append(action)
        return True

    def forget_deferred(self) -> None:
        """Drop every thread's deferred actions (a forked child must not run its parent's)."""
        for record in list(self.threads.values()):
            record.deferred.clear()


def _half_imported() -> bool:
    """Whether a module the report-time blocks import is being initialised now."""
    for name, module in list(sys.modules.items()):
        if name.startswith(REPORT_TIME_MODULES):
            spec = getattr(module, "__spec__", None)
            if getattr(spec, "_initializing", False):
                return True
    return False


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
        # A block open across the fork still exits on the old record: nothing
        # of the parent's may run from there.
        self.importing.forget_deferred()
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
