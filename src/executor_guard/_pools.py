"""What a pool is doing at shutdown, read from the executors' internals.

Only attributes are read, defensively: an executor from a future Python or a
user subclass without them is simply reported as having no pending work.
"""

from __future__ import annotations

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
    pending_items = getattr(pool, "_pending_work_items", None)
    if isinstance(pending_items, dict):
        manager = getattr(pool, "_executor_manager_thread", None) or getattr(
            pool, "_queue_management_thread", None
        )
        threads = (manager,) if isinstance(manager, threading.Thread) else None
        return bool(pending_items), threads
    queue = getattr(pool, "_work_queue", None)
    workers = getattr(pool, "_threads", None)
    threads = tuple(workers) if workers else None
    empty = getattr(queue, "empty", None)
    try:
        if empty is not None and not empty():
            return True, threads
    except Exception as exc:
        if not is_ours(exc):
            raise
    idle = getattr(pool, "_idle_semaphore", None)
    idle_count = getattr(idle, "_value", None)
    if threads and isinstance(idle_count, int):
        return len(threads) > idle_count, threads
    return False, threads
