"""What the patched methods run: find the call site, ask the policy, record.

This is the hot path, in two layers:

* :data:`INIT_BODY`, :data:`SHUTDOWN_BODY` and :data:`EXIT_BODY` are the
  bodies of the patched methods themselves. ``_patch`` compiles them, with
  the original's signature, in this module's namespace, so the common case
  runs in the patched method's own frame: a creation at the line that built
  the previous pool (the one-entry cache), with nothing due for the policy
  or the stack sampler, costs one ``next()``, one clock read and one record;
  an ordinary shutdown costs a dict pop and a queue append.
* Everything else is in plain functions below (:func:`on_init`,
  :func:`on_shutdown`, :func:`on_exit`): the call-site walk, the policy, the
  stack sampler, ``wait=False`` with work pending.

Formatting, structlog, psutil and JSON wait until the policy has something to
say or a report is made. The hooks never hold anything a re-entrant call
would wait for (see ``_registry``). They swallow their own errors, never the
program's: an exception that comes from the program's own code (a signal
handler's timeout raised while a hook runs) propagates unchanged.
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
from .exceptions import ExecutorChurnError as _ExecutorChurnError  # noqa: F401 - read by the patched methods

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Optional

    from ._callsite import SiteKey
    from ._guard import Guard
    from ._registry import Record

_QUALNAME = sys.version_info >= (3, 11)
_clock = time.monotonic
_get_ident = threading.get_ident
_current_thread = threading.current_thread
_thread_table: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]
_setattr = object.__setattr__
_RECORD_ATTR = _registry.RECORD_ATTR
_new_record = _registry.new_record
_Record = _registry.Record
_end = _registry.end
_end_with = _registry.end_with
_getframe = sys._getframe
_append = _registry.TABLES.events.append
_events = _registry.TABLES.events
_BATCH = _registry.BATCH
_drain_soon = _registry.drain_soon
_peaked = _registry.peaked
_sample = _registry.sample
_refresh = _registry.refresh

#: The active guard, or None; set by ``_guard`` when a guard (de)activates.
_guard: Optional[Guard] = None
#: The patched classes themselves (their constructors have nothing of their
#: own to skip) -> their name, or None if they set attributes their own way.
#: A stock pool takes a plain attribute store and this name on the hot path:
#: fewer distinct C paths than ``object.__setattr__`` and ``__name__``, and
#: those cost cache misses right after a thread start evicted them.
_STOCK: dict[type, Optional[str]] = {}


def bind(guard: Optional[Guard]) -> None:
    """Route the hooks to ``guard`` (None: record nothing)."""
    global _guard
    _guard = guard


def stock(cls: type) -> None:
    """``cls`` is a patched class itself: its instances need no constructor skip."""
    plain = getattr(cls, "__setattr__", None) is object.__setattr__
    _STOCK[cls] = cls.__name__ if plain else None


# -- the patched methods' bodies (compiled by _patch with each original's signature) --

INIT_BODY = """
    __tracebackhide__ = True  # pytest: start the traceback at the call site
    guard = _guard
    if guard is None:
        return original({call})
    try:
        record = _SLOW
        due = None
        try:
            frame = _getframe(1)
            last_code, last_lasti, site = guard.last
            if frame.f_code is last_code and frame.f_lasti == last_lasti:
                attempt = next(site.attempts)
                if attempt < site.fast_until:
                    at = _clock()
                    record = _Record(self, _append)
                    record.site = site
                    current = _thread_table.get(_get_ident())
                    record.thread = current._name if current is not None else _thread_name()
                    name = _STOCK.get(type(self))
                    record.workers = {workers}
                    record.mode = None
                    record.extra = None
                    record.state = -1
                    # Filed (counted once built):
                    if name is not None:
                        record.cls = name
                        self.{record} = record
                    else:
                        record.cls = type(self).__name__
                        _setattr(self, _RECORD_ATTR, record)
                    site.last_at = at
                    live_now = site.open
                    live_now[record] = None
                    if len(live_now) > site.peak_live:
                        _peaked(site, live_now)
                    if at >= site.sample_due:
                        _sample(site, at)
                    elif len(live_now) > site.sample_live:
                        # A peak between two samples lifts the last one.
                        site.timeline[-1] = site.sample_live = len(live_now)
                    if len(_events) >= _BATCH:
                        _drain_soon()
                else:
                    due = (site, attempt - site.failed)
        except Exception as exc:
            record = _failed(exc, "recording a pool creation")
        if record is _SLOW:
            try:
                record = on_init(self, _getframe(1), {workers}, due)
            except _ExecutorChurnError as refused:
                # A fresh traceback: it starts here, one frame under the call site.
                raise refused.with_traceback(None) from None
        result = original({call})
        if record is not None:
            # _registry.built, inlined: from here the pool counts.
            record.state = 0
            if record.mode is not None:
                _append(record)  # it ended inside its constructor: count that now
        return result
    except BaseException:
        # The constructor raised, or an exception of the program's (a signal
        # handler's) reached us: a pool filed for this call was never built.
        _creation_failed(self)
        raise
"""

SHUTDOWN_BODY = """
    if _guard is not None:
        try:
            record = self.{record}
        except AttributeError:
            # The class default went with an uninstall in another thread just
            # now. Only this one read is inside the try.
            record = None
        if record is not None and record.mode is None:
            if {wait} and not {cancel}:
                if record.workers is None:
                    record.workers = getattr(self, "_max_workers", None)
                site = record.site
                live_now = site.open
                live_now.pop(record, None)
                at = _clock()
                if at >= site.sample_due:
                    _sample(site, at)
                record.mode = "wait"
                _append(record)
                if len(_events) >= _BATCH:
                    _drain_soon()
            else:
                on_shutdown(self, record, {wait}, {cancel})
    return original({call})
"""

EXIT_BODY = """
    if _guard is not None:
        try:
            record = self.{record}
        except AttributeError:
            record = None
        if record is not None and record.mode is None:
            on_exit(self, record)
    return original({call})
"""


def _eg_wait(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``wait`` from a shutdown whose signature is not mirrored (``*args, **kwargs``)."""
    return args[0] if args else kwargs.get("wait", True)


def _eg_workers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``max_workers`` from a constructor whose signature is not mirrored."""
    workers = args[0] if args else kwargs.get("max_workers")
    return workers if type(workers) is int else None


def _eg_cancel(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``cancel_futures`` from a shutdown whose signature is not mirrored."""
    return args[1] if len(args) > 1 else kwargs.get("cancel_futures", False)


#: The fast path's "not done here: take the full path".
_SLOW: Any = object()


def _thread_name() -> str:
    return _current_thread().name


def _creation_failed(pool: Any) -> None:
    """A creation did not complete: abandon the record filed for ``pool``, if any."""
    # No try: an exception a signal handler raises here is the program's.
    filed = getattr(pool, "__dict__", None)
    record = filed.get(_RECORD_ATTR) if type(filed) is dict else None
    if record is not None and record() is pool and record.mode != "abandoned":
        init_failed(record)


def _failed(exc: Exception, where: str) -> None:
    """One of our own errors: say so once and record nothing; re-raise the program's."""
    if not is_ours(exc):
        raise exc
    internal_error(where, exc)


# -- the full paths ---------------------------------------------------------------


def on_init(
    pool: Any, frame: Optional[FrameType], workers: Any, due: Optional[tuple[Any, int]] = None
) -> Optional[Record]:
    """A pool is being built; ``frame`` called its constructor. May raise on purpose.

    Returns the pool's record, queued for counting (None when nothing is
    recorded). Raises :class:`~executor_guard.ExecutorChurnError` in
    ``raise`` mode, or what a warning filter makes of the warning, before the
    pool is built. ``workers`` is the ``max_workers`` the caller gave; ``due``
    is ``(site, attempt)`` when the fast path already numbered the attempt.
    """
    __tracebackhide__ = True
    guard = _guard
    if guard is None:
        return None
    try:
        cls = type(pool)
        if due is None:
            found = _site(guard, cls, frame)
            if found is None:
                return None
            site, creator, site_frame = found
            attempt = next(site.attempts) - site.failed
        else:
            site, attempt = due
            creator = site_frame = frame  # the cache holds direct creations only
        at = _clock()
        crossing = guard.policy.check(site, attempt, at) if attempt >= site.due else None
        if crossing is None:
            return _record(guard, pool, cls, site, creator, attempt, at, workers)
    except Exception as exc:
        _failed(exc, "recording a pool creation")
        return None
    try:
        crossing.pool = (cls.__name__, _thread_name())
        guard.policy.act(crossing, site_frame)
    except BaseException:
        _registry.refused(site, at)
        raise
    try:
        return _record(guard, pool, cls, site, creator, attempt, at, workers)
    except Exception as exc:
        _failed(exc, "recording a pool creation")
        return None


def _site(guard: Guard, cls: type, frame: Optional[FrameType]) -> Any:
    """``(site, creator frame, site frame)`` of a creation the one-entry cache did not know.

    None when nothing is to be recorded (no frame, or the site table is full).
    """
    skip = None if cls in _STOCK else init_codes(cls)
    kinds = guard.kinds
    if skip is None and frame is not None and kinds.get(frame.f_code.co_filename) == APP:
        creator = site_frame = frame
    else:
        creator, site_frame = locate(frame, guard.kind_of, skip, kinds)  # type: ignore[assignment]
        if creator is None or site_frame is None:
            return None
    code = site_frame.f_code
    key: SiteKey = (
        code.co_filename,
        site_frame.f_lineno,
        code.co_qualname if _QUALNAME else code.co_name,  # type: ignore[attr-defined]
    )
    if creator is not site_frame:
        # Two library lines reached from one application line are two sites.
        key = (*key, creator.f_code.co_filename, creator.f_lineno)
    site = guard.sites.get(key)
    if site is None:
        site = guard.new_site(key, site_frame, creator, _clock())
        if site is None:
            return None
    direct = frame is not None and site_frame is frame and kinds.get(code.co_filename) == APP
    if direct and site.registry is guard.registry:
        # Only direct creations by application code are cached: for them all
        # three are the frame (a library line without an application caller
        # stands for whoever calls it next). The class is not part of the
        # key: a subclass with a constructor of its own is never a direct
        # creation (its __init__ is the frame).
        guard.last = (site_frame.f_code, site_frame.f_lasti, site)
    return site, creator, site_frame


def _record(
    guard: Guard,
    pool: Any,
    cls: type,
    site: Any,
    creator: Any,
    attempt: int,
    at: float,
    workers: Any,
) -> Record:
    current = _thread_table.get(_get_ident())
    thread = current._name if current is not None else _current_thread().name  # type: ignore[attr-defined]
    record = _new_record(pool, site, at, thread, cls.__name__, workers)
    if attempt >= site.next_sample:
        depth = guard.depth
        if depth <= 0:
            site.next_sample = NEVER
        else:
            # A race between threads only captures one stack more or less.
            site.next_sample = (
                attempt + 1 if attempt < STACK_FIRST else (attempt // STACK_EVERY + 1) * STACK_EVERY
            )
            record.extra = (stack(creator, depth, guard.kind_of), None)
    _refresh(site)
    return record


def init_failed(record: Record) -> None:
    """The constructor raised: the pool was never built."""
    try:
        _registry.abandon(record)
    except Exception as exc:
        _failed(exc, "undoing a failed pool creation")


def on_shutdown(pool: Any, record: Record, wait: Any, cancel_futures: Any) -> None:
    """The first ``shutdown()`` of a recorded pool, other than a plain ``wait=True``."""
    try:
        if record.workers is None:
            record.workers = getattr(pool, "_max_workers", None)
        if wait:
            _end_with(record, "wait", cancel_futures, False, None)
        else:
            pending, threads = pending_and_workers(pool)
            _end_with(record, "nowait", cancel_futures, pending, threads)
    except Exception as exc:
        _failed(exc, "recording a pool shutdown")


def on_exit(pool: Any, record: Record) -> None:
    """``__exit__`` of a ``with`` block: the pool ends in ``context`` mode."""
    try:
        if record.workers is None:
            record.workers = getattr(pool, "_max_workers", None)
        _end(record, "context")
    except Exception as exc:
        _failed(exc, "recording a pool shutdown")
