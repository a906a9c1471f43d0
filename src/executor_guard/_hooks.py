"""What the patched methods call: find the call site, ask the policy, record.

This is the hot path. A pool built directly by application code at a known
site costs: one frame check, one key tuple, one dict lookup, one ``next()``,
one comparison with the policy's next due count, one record. The stack is
captured only when the site samples it; formatting, structlog, psutil and JSON
wait until the policy has something to say or a report is made.

The hooks never hold anything a re-entrant call would wait for (see
``_registry``). They swallow their own errors, never the program's: an
exception that comes from code of the program's own (a signal handler's
timeout raised while a hook runs) propagates unchanged.
"""

from __future__ import annotations

import sys
import threading
import time

from . import _registry
from ._callsite import APP, init_codes, locate, stack
from ._diagnostics import internal_error, is_ours
from ._pools import pending_and_workers
from ._registry import NEVER, STACK_EVERY, STACK_FIRST

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Optional

    from ._guard import Guard
    from ._registry import Record

_QUALNAME = sys.version_info >= (3, 11)
_clock = time.monotonic
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_thread_table: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]
_records = _registry.TABLES.records
_new_record = _registry.new_record
_end = _registry.end
_end_with = _registry.end_with
_append = _registry.TABLES.events.append
_events = _registry.TABLES.events
_owner = _registry.TABLES.owner
_drain = _registry.drain
_BATCH = _registry.BATCH

#: The active guard, or None; set by ``_guard`` when a guard (de)activates.
_guard: Optional[Guard] = None
#: The pool classes whose constructors have nothing of their own to skip.
_STOCK: set[type] = set()


def bind(guard: Optional[Guard]) -> None:
    """Route the hooks to ``guard`` (None: record nothing)."""
    global _guard
    _guard = guard


def stock(cls: type) -> None:
    """``cls`` is a patched class itself: its instances need no constructor skip."""
    _STOCK.add(cls)


def on_init(pool: Any, frame: Optional[FrameType]) -> Optional[Record]:
    """A pool is being built; ``frame`` called its constructor. May raise on purpose.

    Returns the pool's record (None when nothing is recorded). Raises
    :class:`~executor_guard.ExecutorChurnError` in ``raise`` mode, or what a
    warning filter makes of the warning, before the pool is built.
    """
    __tracebackhide__ = True
    guard = _guard
    if guard is None:
        return None
    try:
        cls = type(pool)
        skip = None if cls in _STOCK else init_codes(cls)
        kinds = guard.kinds
        if skip is None and frame is not None and kinds.get(frame.f_code.co_filename) == APP:
            creator = site_frame = frame
        else:
            creator, site_frame = locate(frame, guard.kind_of, skip, kinds)  # type: ignore[assignment]
            if creator is None or site_frame is None:
                return None
        code = site_frame.f_code
        key = (
            code.co_filename,
            site_frame.f_lineno,
            code.co_qualname if _QUALNAME else code.co_name,  # type: ignore[attr-defined]
        )
        at = _clock()
        site = guard.sites.get(key)
        if site is None:
            site = guard.new_site(key, site_frame, creator, at)
            if site is None:
                return None
        attempt = next(site.attempts) - site.failed
        crossing = guard.policy.check(site, attempt, at) if attempt >= site.due else None
        if crossing is None:
            # _record(), inlined: this is every creation's path.
            current = _thread_table.get(_get_ident())
            record = _new_record(
                pool,
                site,
                at,
                current._name if current is not None else _current_thread().name,  # type: ignore[attr-defined]
                cls.__name__,
            )
            if attempt >= site.next_sample:
                _sample(guard, site, record, creator, attempt)
            return record
    except Exception as exc:
        if not is_ours(exc):
            raise
        internal_error("recording a pool creation", exc)
        return None
    try:
        guard.policy.act(crossing, site_frame)
    except BaseException:
        _registry.refused(site, at)
        raise
    try:
        return _record(guard, pool, cls, site, creator, attempt, at)
    except Exception as exc:
        if not is_ours(exc):
            raise
        internal_error("recording a pool creation", exc)
        return None


def _record(
    guard: Guard, pool: Any, cls: type, site: Any, creator: Any, attempt: int, at: float
) -> Record:
    current = _thread_table.get(_get_ident())
    thread = current._name if current is not None else _current_thread().name  # type: ignore[attr-defined]
    record = _new_record(pool, site, at, thread, cls.__name__)
    if attempt >= site.next_sample:
        _sample(guard, site, record, creator, attempt)
    return record


def _sample(guard: Guard, site: Any, record: Record, creator: Any, attempt: int) -> None:
    """Capture this creation's stack: every one of the first, then one in STACK_EVERY."""
    depth = guard.depth
    if depth <= 0:
        site.next_sample = NEVER
        return
    # A race between threads only captures one stack more or less.
    site.next_sample = (
        attempt + 1 if attempt < STACK_FIRST else (attempt // STACK_EVERY + 1) * STACK_EVERY
    )
    record.stack = stack(creator, depth, guard.kind_of)


def init_done(record: Record, workers: Any) -> None:
    """The constructor returned: count the pool."""
    try:
        record.workers = workers if type(workers) is int else None
        # _registry.queue(), inlined: one application per pool, at its end.
        _append(record)
        if len(_events) >= _BATCH and not _owner:
            _drain()
    except Exception as exc:
        if not is_ours(exc):
            raise
        internal_error("recording a pool creation", exc)


def init_failed(record: Record) -> None:
    """The constructor raised: the pool was never built."""
    try:
        _registry.abandon(record)
    except Exception as exc:
        if not is_ours(exc):
            raise
        internal_error("undoing a failed pool creation", exc)


def on_shutdown(pool: Any, wait: Any, cancel_futures: Any) -> None:
    """The first ``shutdown()`` of a recorded pool: ``wait`` or ``nowait``."""
    record = _records.pop(id(pool), None)
    if record is None:
        return
    try:
        if record() is not pool:  # not its record: leave it where it was
            _records[record.pool_id] = record
            return
        if not wait:
            pending, threads = pending_and_workers(pool)
            _end_with(record, "nowait", cancel_futures, pending, threads)
        elif cancel_futures:
            _end_with(record, "wait", cancel_futures, False, None)
        else:
            # _registry.end(), inlined: every shutdown's path.
            record.mode = "wait"
            _append(record)
            if not _owner:
                _drain()
    except Exception as exc:
        if not is_ours(exc):
            raise
        internal_error("recording a pool shutdown", exc)


def on_exit(pool: Any) -> None:
    """``__exit__`` of a ``with`` block: the pool ends in ``context`` mode."""
    record = _records.pop(id(pool), None)
    if record is None:
        return
    try:
        if record() is not pool:
            _records[record.pool_id] = record
            return
        _end(record, "context")
    except Exception as exc:
        if not is_ours(exc):
            raise
        internal_error("recording a pool shutdown", exc)
