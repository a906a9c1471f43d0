"""What a pool is doing at shutdown, read from the executors' internals.

Only attributes are read, defensively: an executor from a future Python or a
user subclass without them is simply reported as having no pending work.
"""

from __future__ import annotations

import sys
import threading

from ._diagnostics import is_ours

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from typing import Any, Optional


def pending_and_workers(pool: Any) -> tuple[bool, Optional[tuple[threading.Thread, ...]]]:
    """Whether work is queued or running, and the threads that keep it alive.

    Thread pools: a queued work item, or more workers than idle ones.
    Process pools: any work item whose result has not come back; the executor
    manager thread stands for the workers (it outlives them and joins them).
    """
    pending_items = _internal(pool, "_pending_work_items")
    if isinstance(pending_items, dict):
        manager = _internal(pool, "_executor_manager_thread") or _internal(
            pool, "_queue_management_thread"
        )
        threads = (manager,) if isinstance(manager, threading.Thread) else None
        return bool(pending_items), threads
    queue = _internal(pool, "_work_queue")
    workers = _internal(pool, "_threads")
    threads = tuple(workers) if workers else None
    empty = getattr(queue, "empty", None)
    try:
        if empty is not None and not empty():
            return True, threads
    except Exception as exc:
        if not is_ours(exc):
            raise
    idle = _internal(pool, "_idle_semaphore")
    idle_count = getattr(idle, "_value", None)
    if threads and isinstance(idle_count, int) and len(threads) > idle_count:
        running = _running_unfinished(threads)
        return (True if running is None else running), threads
    return False, threads


def _internal(pool: Any, name: str) -> Any:
    """The executor's own attribute ``name``, or None; never asks the class's ``__getattr__``.

    A subclass's ``__getattr__`` may raise anything for a name it does not know
    (``return self.settings[name]``); the stock classes never read a missing
    attribute, so neither may the guard.
    """
    try:
        return object.__getattribute__(pool, name)
    except AttributeError:
        return None


def _running_unfinished(threads: tuple[threading.Thread, ...]) -> Optional[bool]:
    """Whether a worker is inside a work item that has not finished; None when it cannot tell.

    A worker counts as busy from taking an item until it releases the idle
    semaphore, a few bytecodes *after* the item's result is set: a caller
    that collected every result and then shut down with ``wait=False`` would
    otherwise find work "pending" in some runs and not in others. Where the
    worker's frames are says it instead: inside ``_WorkItem.run`` up to the
    call of the work itself, the work has not finished; past it, it has.
    Only code objects and line numbers are read, never a local variable.
    Free-threaded builds cannot walk another thread's frames safely: None
    there, as for workers that do not run the stock ``_WorkItem``.
    """
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is not None and not is_gil_enabled():
        return None
    lines = _run_lines()
    if lines is None:
        return None
    run_code, running = lines
    frames = sys._current_frames()
    frame = None
    try:
        for thread in threads:
            frame = frames.get(thread.ident) if thread.ident is not None else None
            while frame is not None and frame.f_code is not run_code:
                frame = frame.f_back
            if frame is not None and frame.f_lineno in running:
                return True
        return False
    finally:
        del frames, frame  # frames hold the workers' locals: drop them at once


#: ``(_WorkItem.run's code, the lines where its work has not finished)``, read once.
_RUN_LINES: list[Optional[tuple[Any, frozenset[int]]]] = []


def _run_lines() -> Optional[tuple[Any, frozenset[int]]]:
    """``_WorkItem.run``'s lines from starting the work up to its call, "return" left out."""
    if _RUN_LINES:
        return _RUN_LINES[0]
    found: Optional[tuple[Any, frozenset[int]]] = None
    module = sys.modules.get("concurrent.futures.thread")
    code = getattr(getattr(getattr(module, "_WorkItem", None), "run", None), "__code__", None)
    if code is not None:
        import linecache

        first = call = None
        lines = linecache.getlines(code.co_filename)
        for number in range(code.co_firstlineno, min(len(lines), code.co_firstlineno + 40) + 1):
            text = lines[number - 1]
            if first is None and "set_running_or_notify_cancel" in text:
                first = number
            elif first is not None and "self.fn(" in text:
                call = number
                break
        if first is not None and call is not None:
            # A cancelled item's "return" lies between: it runs nothing.
            running = {n for n in range(first, call + 1) if lines[n - 1].strip() != "return"}
            found = (code, frozenset(running))
    _RUN_LINES.append(found)
    return found
