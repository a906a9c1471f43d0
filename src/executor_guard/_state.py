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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Optional, Protocol

    class Part(Protocol):
        """What a module's state object offers the state owner."""

        def reset(self) -> None: ...

        def after_fork(self) -> None: ...


#: Seconds a fork waits at most for report-time imports in other threads.
_FORK_WAIT = 5.0


class Importing:
    """The report-time imports under way, by thread, and what waits for them.

    Not a lock: no thread ever waits here for another thread's import (the
    import system orders those), so a report can never wait for a thread that
    is waiting for it, and an exit lost to a signal handler's exception
    leaves nothing held. Each entry is the frame of its ``with`` block, so an
    entry that such a lost exit left behind is recognised (its frame has
    returned) and ignored.
    """

    def __init__(self) -> None:
        #: Thread ident -> (frame id, code) of each ``with`` block it is in, innermost last.
        self.frames: dict[int, list[tuple[int, object]]] = {}
        self.deferred: list[Callable[[], object]] = []

    def __enter__(self) -> None:
        frame = sys._getframe(1)
        self.frames.setdefault(_thread.get_ident(), []).append((id(frame), frame.f_code))

    def __exit__(self, *exc_info: object) -> None:
        ident = _thread.get_ident()
        entries = self.frames.get(ident)
        if entries:
            entries.pop()
        if not entries or not _on_stack(entries, sys._getframe(1)):
            self.frames.pop(ident, None)
            if self.deferred:
                self._run_deferred()

    def others(self) -> bool:
        """Whether a thread other than this one is inside a report-time import now."""
        me = _thread.get_ident()
        busy = [ident for ident in list(self.frames) if ident != me]
        if not busy:
            return False
        current = sys._current_frames()
        for ident in busy:
            entries = self.frames.get(ident)
            if entries and _on_stack(list(entries), current.get(ident)):
                return True
        return False

    def defer(self, action: Callable[[], object]) -> bool:
        """Run ``action`` once this thread's report-time import is done; False if none is.

        For a signal handler (or a finalizer) that runs in the middle of such
        an import, where the half-imported module cannot be used yet: the
        handler returns, the import goes on, and ``action`` runs right after
        it, in the same thread.
        """
        entries = self.frames.get(_thread.get_ident())
        if not entries or not _on_stack(entries, sys._getframe(1)):
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


def _on_stack(entries: list[tuple[int, object]], frame: Optional[FrameType]) -> bool:
    """Whether one of ``entries`` is ``frame`` or one of its callers."""
    wanted = set(entries)
    while frame is not None:
        if (id(frame), frame.f_code) in wanted:
            return True
        frame = frame.f_back
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
