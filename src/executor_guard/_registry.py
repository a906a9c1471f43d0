"""Per-pool records and per-call-site counts: the registry counts, and nothing else.

The registry never blocks and never holds anything while Python code can run.
The garbage collector, finalizers and signal handlers can run inside any of
our code (an allocation can start a collection; a handler runs between two
bytecodes), and any of them may create or shut down a pool. So:

* A creation *files* the pool's :class:`Record` (on the pool itself, in the
  attribute :data:`RECORD_ATTR`, and in its site's dict of live pools: atomic
  operations). Its end, or its collection, *queues* the record on a deque
  (``append`` and ``popleft`` are atomic); creations are counted when their
  record is applied.
* One owner applies the queue, in order, in batches. Ownership is taken with
  ``dict.setdefault`` on a token made for that attempt: it either succeeds at
  once or fails at once, so a re-entrant or concurrent call finds the owner
  busy, leaves its event queued for the owner (who loops until the queue is
  empty) and returns. Nothing ever waits.
* The release is in a ``finally`` that checks the token, not a flag set after
  the acquisition: an exception raised by a signal handler right after the
  acquisition (Ctrl-C, a SIGALRM timeout) still releases it; one landing inside
  the release itself leaves a stale owner that :func:`recover` frees.
* Counts are exact whatever the interleaving of threads (8 threads x 20,000
  creations give 160,000); a report first applies whatever is queued.

The registry never holds a pool: each pool's :class:`Record` *is* a weak
reference to it, whose callback is the queue's own ``append``. A pool shut
down with ``wait=False`` while work was pending stays *live* while its workers
run; the record then holds weak references to those threads, never the threads.

Bounds, so that a pathological program cannot exhaust memory through us:
:data:`MAX_SITES` call sites (creations at further sites are counted as
overflow), :data:`MAX_STACKS` distinct stacks per site, :data:`MAX_NAMES`
distinct thread names and classes per site, :data:`BATCH` queued events
before they are applied.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import weakref
from array import array
from collections import deque

from ._callsite import running
from ._diagnostics import internal_error, is_ours
from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from ._callsite import Frame, SiteKey

#: Every creation at a site has its stack captured until the site has this many.
STACK_FIRST = 16
#: After that, one creation in this many has its stack captured.
STACK_EVERY = 64
#: Distinct stacks kept per site; further distinct stacks are only counted.
MAX_STACKS = 8
#: Distinct call sites kept per registry; creations at further sites are counted.
MAX_SITES = 4096
#: Distinct thread names, classes and max_workers values kept per site.
MAX_NAMES = 32
#: Stacks sharing frames share the frame tuples; this bounds the intern table.
_MAX_INTERNED = 65536
#: How long a report waits for another thread to finish applying events.
_SNAPSHOT_PATIENCE = 1.0

OTHER = "(other)"
#: A count no site reaches: "no event due".
NEVER = 1 << 62
#: Samples of ``(time, live pools)`` a site's timeline keeps (two doubles each):
#: when full, pairs of neighbours are merged into the one with more live pools,
#: so a long run keeps its shape and its peaks in bounded memory.
TIMELINE_SAMPLES = 96
TIMELINE_MAX = 2 * TIMELINE_SAMPLES

#: Kinds of the queued counts that are not a pool's record (an :class:`_Event`).
_REFUSED = 0
_OVERFLOW = 1
_UNDO = 2


class _Event:
    """A queued count that is not a pool's record: a refusal, an overflow, an undo."""

    __slots__ = ("detail", "kind", "state", "target")

    def __init__(self, kind: int, target: Any, detail: Any) -> None:
        self.kind = kind
        self.target = target
        self.detail = detail
        #: 3 where a record's ``state`` (-1 to 2) is: the queue tells the two
        #: apart with the one attribute read it makes anyway; 2 once applied.
        self.state = 3


class _Tables:
    """The process-wide tables: the event queue, the owner slot, the frame intern table.

    The objects are created once and emptied in place, so the hot path can
    keep module-level references to them.
    """

    def __init__(self) -> None:
        self.events: deque[Any] = deque()
        self.owner: dict[int, object] = {}
        self.frames: dict[Frame, Frame] = {}

    def reset(self) -> None:
        self.events.clear()
        self.owner.clear()
        self.frames.clear()

    def after_fork(self) -> None:
        # A parent thread may have owned the queue at the fork: the child starts clean.
        self.reset()


TABLES = _Tables()
STATE.register("records", TABLES)

_events = TABLES.events
_owner = TABLES.owner
_frames = TABLES.frames
_append = _events.append
_get_ident = threading.get_ident
_active: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]
_setattr = object.__setattr__

#: The attribute a recorded pool carries its :class:`Record` in: the pool's own
#: ``shutdown()`` finds it with one attribute read, and it lives exactly as
#: long as the pool. The patched classes hold a default of None for it (see
#: ``_patch``), so a pool built before the guard reads None, and a subclass's
#: ``__getattr__`` is never asked for it.
RECORD_ATTR = "_executor_guard_record"


class Record(weakref.ref):  # type: ignore[type-arg]
    """One pool: a weak reference to it, what its creation was, and how it ended.

    Filled by the hooks, applied to its site by the event owner when queued
    (at its end, at its collection, or by a report while it is open).
    ``state`` is -1 while the constructor runs, 0 once it has returned (the
    pool is built and counts from then on), 1 once a report has counted the
    creation of the still open pool, 2 once applied whole. The constructor's
    return is the one step that makes a pool count: a constructor cut short
    by an exception (its own, or a signal handler's landing anywhere in our
    code, our undo included) leaves a record that is dropped when the
    half-built pool is collected.
    """

    __slots__ = ("cls", "extra", "mode", "site", "state", "thread", "workers")

    site: Site
    thread: str
    cls: str
    workers: Optional[int]
    mode: Optional[str]
    #: None for most pools; else ``(stack, end)``: the sampled creation stack
    #: (or None) and the end's details (or None): ``(cancel_futures, work
    #: pending, weak references to the workers)``.
    extra: Optional[tuple[Optional[tuple[Frame, ...]], Optional[tuple[bool, bool, Any]]]]
    state: int

    # Records are set members by identity (a weak reference's own hash and
    # equality would ask the pool's, which may be Python code or unhashable).
    __hash__ = object.__hash__
    __eq__ = object.__eq__


class Site:
    """One call site: its identity, its counts (the registry's) and the policy's state.

    Counts change only while applying events. ``attempts``, ``failed``,
    ``next_sample`` and the policy's slots (``due``, ``churn``, ``milestone``,
    ``times``) are read and written by the hooks and the policy directly.
    """

    # Slot order is memory order: what a pool's creation and shutdown touch
    # comes first, in two cache lines; then what counting a plain pool touches.
    __slots__ = (  # noqa: RUF023 - in that order on purpose
        "attempts",
        "fast_until",
        "open",
        "peak_live",
        "sample_due",
        "sample_live",
        "last_at",
        "timeline",
        "run",
        "run_thread",
        "run_class",
        "run_workers",
        "run_mode",
        "failed",
        "due",
        "next_sample",
        "app_frame",
        "cancel_futures",
        "captured",
        "churn",
        "classes",
        "context",
        "created",
        "creator",
        "draining",
        "file",
        "first_at",
        "function",
        "ignored",
        "line",
        "max_workers",
        "milestone",
        "module",
        "never",
        "nowait",
        "nowait_pending",
        "refused",
        "registry",
        "sample_gap",
        "stacks",
        "stacks_dropped",
        "threads",
        "times",
        "wait",
    )

    def __init__(
        self,
        registry: Registry,
        key: SiteKey,
        creator: Frame,
        module: str,
        ignored: bool,
        at: float,
        app_frame: Optional[Frame] = None,
    ) -> None:
        self.registry = registry
        self.file, self.line, self.function = key[0], key[1], key[2]
        self.creator = creator
        #: The application frame the site is, or None when no frame on the
        #: stack was application code (the site is then the creator).
        self.app_frame = app_frame
        self.module = module
        self.ignored = ignored
        #: Numbers every attempt (atomically: ``next()`` on it is one C call).
        self.attempts = itertools.count(1)
        #: Attempts whose constructor raised; they do not count.
        self.failed = 0
        self.next_sample = 0
        #: Attempts numbered below this take the hooks' fast path: nothing is
        #: due for the policy or the stack sampler (see :func:`refresh`).
        self.fast_until = 0
        # The policy's state (see _policy.Policy.configure_site).
        self.due = 0
        self.churn = False
        self.milestone = 0
        self.times: Optional[deque[float]] = None
        # Counts.
        self.created = 0
        self.refused = 0
        #: The records of this site's live pools (not ended, or draining), as
        #: the keys of a dict (smaller than a set at this size). The hooks add
        #: and remove (atomic dict operations), so the peak is taken at each
        #: creation, in the order creations happen.
        self.open: dict[Record, None] = {}
        self.peak_live = 0
        self.first_at = at
        self.last_at = at
        self.context = 0
        self.wait = 0
        self.nowait = 0
        self.never = 0
        self.nowait_pending = 0
        self.cancel_futures = 0
        self.threads: dict[str, int] = {}
        self.classes: dict[str, int] = {}
        # Consecutive creations by one thread name and class are counted in
        # `run` and folded into `threads`/`classes` when either changes.
        self.run = 0
        self.run_thread: Optional[str] = None
        self.run_class: Optional[str] = None
        self.run_workers: Optional[int] = None
        self.run_mode = "wait"
        self.max_workers: dict[Optional[int], int] = {}
        self.stacks: dict[tuple[Frame, ...], int] = {}
        self.stacks_dropped = 0
        self.captured = 0
        self.draining: deque[Record] = deque()
        #: ``t0, live0, t1, live1, ...``: live pools after each creation and end
        #: the hooks see (monotonic times), thinned by :func:`sample`.
        self.timeline = array("d")
        #: When the hooks take their next sample, and the spacing once thinned:
        #: a long run then samples at the resolution its timeline can keep,
        #: and the hot path only compares two floats in between.
        self.sample_due = 0.0
        self.sample_gap = 0.0
        #: The live pools of the last sample (an int: the hooks compare it
        #: without reading a float out of the timeline).
        self.sample_live = 0


# -- submitting and applying events ------------------------------------------------


#: Creations queue up to this many before the queue is applied (a shutdown,
#: a report or the next batch applies them): one application per pool.
BATCH = 32


#: A queue this long makes the next submitter check for a stale owner.
STALE_CHECK = 4096


def submit(event: Any) -> None:
    """Queue ``event`` and apply the queue unless another call is applying it."""
    _append(event)
    if not _owner:
        drain()
    elif len(_events) >= STALE_CHECK:
        recover()
        drain()


def drain_soon() -> None:
    """The queue is a batch long: apply it, or free it from a stale owner first."""
    if not _owner:
        drain()
    elif len(_events) >= STALE_CHECK:
        recover()
        drain()


def recover() -> None:
    """Free the queue if its owner is gone: it can then never release it.

    A second signal landing inside the release itself (two Ctrl-Cs in a row)
    can leave the slot taken by a call that has ended. Only the main thread
    runs signal handlers, so a stale owner is the current thread while no
    frame of it is applying events. Another thread's ownership is never
    taken away: it is applying the queue, or frozen at interpreter exit,
    and then the events wait.
    """
    owner = _owner.get(0)
    stale = owner is not None and owner == _get_ident() and not _owned_here()
    if stale and _owner.get(0) is owner:
        _owner.pop(0, None)


def drain() -> bool:
    """Apply every queued event, unless someone else is; never waits.

    Returns False when another call (another thread, or the call this one
    interrupted) owns the queue: it applies what is queued before it lets go.
    """
    events = _events
    while events:
        # A new int object per call: unique for this attempt, and it says
        # which thread took the queue (see _recover).
        token = _get_ident()
        try:
            if _owner.setdefault(0, token) is not token:
                return False
            _apply_queue()
        except Exception as exc:
            if not is_ours(exc):
                raise
            internal_error("counting pools", exc)
        finally:
            if _owner.get(0) is token:
                del _owner[0]
    return True


def owned(action: Callable[[], Any], otherwise: Callable[[], Any]) -> Any:
    """``action()`` with the queue applied and held, if it is free now; else ``otherwise()``."""
    token = _get_ident()
    try:
        if _owner.setdefault(0, token) is token:
            _apply_queue()
            return action()
    finally:
        if _owner.get(0) is token:
            del _owner[0]
            drain()  # events queued while we held it
    return otherwise()


def _apply_queue() -> None:
    """Apply the queued events in order (call only while owning the queue).

    A pool's record is queued at its end (or its collection, or by a report
    for a pool still open) and applied whole. Peek, apply, then pop, and pop
    only what was applied: an exception a signal handler raises in the middle
    (Ctrl-C, a timeout) leaves the record first in the queue, and the next
    owner applies it again. Each count is taken with the step of ``state``
    that says it was taken, and no call between the two: CPython 3.10 and
    later run signal handlers only at calls and loop edges, so there a count
    is never lost nor taken twice (3.9 can run one between most bytecodes:
    there a storm of handler exceptions can put a count off by a few).
    Breakdowns (threads, classes, sizes, stacks) come after the step: an
    interruption there loses one entry of a breakdown, never a count.
    The application is inlined: this loop is a third of every pool's cost.
    """
    events = _events
    popleft = events.popleft
    while events:
        record: Record = events[0]
        try:
            state = record.state
            if state:
                if state == 2:
                    popleft()  # applied already: the collection of a pool that was shut down
                    continue
                if state == 3:
                    _apply_event(record)  # type: ignore[arg-type]
                    popleft()
                    continue
                if state < 0:
                    # Its constructor has not returned: still building (it
                    # queues itself again when built if it ended meanwhile),
                    # or collected because the constructor raised: never built.
                    if record() is None:
                        record.state = 2
                        record.site.open.pop(record, None)
                    popleft()
                    continue
            mode = record.mode
            site = record.site
            if state == 0 and (mode == "wait" or mode == "context") and record.extra is None:
                # Most pools: built and shut down plainly. Consecutive ones
                # alike are counted as one run, folded into the tables later.
                thread = record.thread
                cls = record.cls
                workers = record.workers
                if (
                    thread is not site.run_thread
                    or cls is not site.run_class
                    or workers is not site.run_workers
                    or mode is not site.run_mode
                ):
                    _fold(site)
                    site.run_thread = thread
                    site.run_class = cls
                    site.run_workers = workers
                    site.run_mode = mode
                site.run += 1
                record.state = 2
                popleft()
                continue
            if state == 0:
                if mode == "abandoned":
                    record.state = 2
                    popleft()
                    continue
                site.created += 1
                record.state = 1
                _count(site.threads, record.thread)
                _count(site.classes, record.cls)
                extra = record.extra
                if extra is not None and extra[0] is not None:
                    _add_stack(site, extra[0])
            if mode is None:
                if record() is not None:
                    popleft()  # still open (a report queued it): counted as created
                    continue
                mode = record.mode = "never"  # queued by the weak reference: collected
                site.open.pop(record, None)
                sample(site, time.monotonic())
            elif mode == "forgotten":
                if record() is None:
                    site.open.pop(record, None)  # unseen end, but gone now
                popleft()
                continue
            elif mode == "abandoned":
                popleft()
                continue
            # The end's count, call-free (see above).
            if mode == "wait":
                site.wait += 1
            elif mode == "never":
                site.never += 1
            elif mode == "nowait":
                site.nowait += 1
            else:
                site.context += 1
            record.state = 2
            _count(site.max_workers, record.workers)
            extra = record.extra
            if extra is not None and extra[1] is not None:
                _ended_with(site, record, extra[1])
            popleft()
        except Exception as exc:
            if not is_ours(exc):
                raise  # the program's: the record stays first, applied again next time
            # Ours, as from a record left half-made by an exception from a
            # signal handler (its pool then never got built): nothing to
            # count, and nothing to retry.
            popleft()


def _apply_event(event: _Event) -> None:
    """Apply a refusal, an overflow or an undo; its ``state`` says it is applied."""
    kind, target, detail = event.kind, event.target, event.detail
    if kind == _REFUSED:
        target.refused += 1
        event.state = 2
    elif kind == _OVERFLOW:
        target.overflow += 1  # here the target is the registry
        event.state = 2
    else:  # _UNDO: a constructor raised after its pool's creation was applied
        site = target.site
        site.created -= 1
        event.state = 2
        if detail is not None:  # and its end
            setattr(site, detail, getattr(site, detail) - 1)


def _ended_with(site: Site, record: Record, end: tuple[bool, bool, Any]) -> None:
    cancel, pending, threads = end
    if cancel:
        site.cancel_futures += 1
    if pending:
        site.nowait_pending += 1
        if threads is not None:
            if _alive(threads):
                site.draining.append(record)  # still live: in site.open until they end
                return
            site.open.pop(record, None)


def _add_stack(site: Site, stack: tuple[Frame, ...]) -> None:
    site.registry.count_threads()
    site.captured += 1
    seen = site.stacks.get(stack)
    if seen is not None:
        site.stacks[stack] = seen + 1
    elif len(site.stacks) < MAX_STACKS:
        site.stacks[_intern(stack)] = 1
    else:
        site.stacks_dropped += 1


def _intern(stack: tuple[Frame, ...]) -> tuple[Frame, ...]:
    if len(_frames) >= _MAX_INTERNED:
        return stack
    return tuple(_frames.setdefault(frame, frame) for frame in stack)


def _alive(threads: Optional[tuple[weakref.ref[threading.Thread], ...]]) -> bool:
    if not threads:
        return False
    for ref in threads:
        thread = ref()
        if thread is not None and thread.is_alive():
            return True
    return False


def _workers(record: Record) -> Optional[tuple[weakref.ref[threading.Thread], ...]]:
    extra = record.extra
    end = extra[1] if extra is not None else None
    return end[2] if end is not None else None


def _prune_all(site: Site) -> None:
    """Retire the draining records whose workers all ended: they are live no more."""
    keep: deque[Record] = deque()
    retired = False
    for record in site.draining:
        if _alive(_workers(record)):
            keep.append(record)
        else:
            site.open.pop(record, None)
            retired = True
    site.draining = keep
    if retired:  # seen now, not when the workers ended: a sample no later than that
        sample(site, time.monotonic())


def _count(table: dict[Any, int], key: Any, n: int = 1) -> None:
    if key in table or len(table) < MAX_NAMES:
        table[key] = table.get(key, 0) + n
    else:
        table[OTHER] = table.get(OTHER, 0) + n


def _fold(site: Site) -> None:
    """Add the current run of alike pools (thread, class, size, end) to the counts."""
    run = site.run
    if run:
        # The counts and the run's reset with no call between (see _apply_queue).
        site.run = 0
        site.created += run
        if site.run_mode == "wait":
            site.wait += run
        else:
            site.context += run
        _count(site.threads, site.run_thread, run)
        _count(site.classes, site.run_class, run)
        _count(site.max_workers, site.run_workers, run)


# -- what the hooks call --------------------------------------------------------


def refused(site: Site, at: float) -> None:
    """An attempt at ``site`` was refused (raise mode, or a warning filter raised)."""
    submit(_Event(_REFUSED, site, at))


def new_record(pool: object, site: Site, at: float, thread: str, cls: str, workers: Any) -> Record:
    """A record for ``pool``, findable by its shutdown; counted once queued."""
    # The callback is the queue's own append: C code, so a pool collected
    # anywhere (inside the collector, in a finalizer) runs none of our Python
    # code, where an exception from a signal handler would be swallowed.
    record = Record(pool, _append)
    record.site = site
    record.thread = thread
    record.cls = cls
    record.workers = workers if type(workers) is int else None
    record.mode = None
    record.extra = None
    record.state = -1  # built when the constructor returns (see _hooks.INIT_BODY)
    _setattr(pool, RECORD_ATTR, record)
    opened(site, record, at)
    return record


def built(record: Record) -> None:
    """The pool's constructor returned: from now on its record counts.

    Nothing before this can make a pool count, so an exception that cuts the
    constructor short (its own, or a signal handler's anywhere in the guard's
    undo) leaves a record that is never counted. ``_hooks.INIT_BODY`` inlines
    these two steps on the hot path.
    """
    record.state = 0
    if record.mode is not None:
        _append(record)  # it ended inside its constructor: count that now


def refresh(site: Site) -> None:
    """Recompute ``site.fast_until`` after ``due``, ``next_sample`` or ``failed`` moved.

    One compare on the hot path instead of a subtraction and two: an attempt
    ``n`` is fast while ``n - failed`` is below both ``due`` and
    ``next_sample``. A value left low only sends attempts to the full path,
    which refreshes it; so only a lowered ``due`` or ``next_sample`` must call this.
    """
    site.fast_until = min(site.due, site.next_sample) + site.failed


def opened(site: Site, record: Record, at: float) -> None:
    """A pool of ``site`` is live from now on: its peak and last creation time."""
    site.last_at = at
    live_now = site.open
    live_now[record] = None
    if len(live_now) > site.peak_live:
        peaked(site, live_now)
    sample(site, at)


def sample(site: Site, at: float) -> None:
    """Add ``(at, live pools now)`` to the site's timeline, thinning it when full.

    Until the timeline first fills, every creation and end is a sample. Once
    thinned, samples are due one ``sample_gap`` apart (the spacing the thinned
    timeline has), and between two samples the hooks only raise the last
    sample to a new peak of live pools: the shape and the peaks stay, and a
    long run pays two float compares per pool instead of a call.
    """
    timeline = site.timeline
    if len(timeline) >= TIMELINE_MAX:
        site.timeline = timeline = _thinned(timeline)
        if len(timeline) >= 4:
            site.sample_gap = (timeline[-2] - timeline[0]) / (len(timeline) // 2 - 1)
    live = len(site.open)
    # One C call per sample: a pair from another thread never lands in between.
    timeline.extend((at, live))
    site.sample_live = live
    site.sample_due = at + site.sample_gap


def _thinned(timeline: array[float]) -> array[float]:
    """Half the samples: each pair of neighbours becomes the one with more live pools."""
    kept = array("d")
    for index in range(0, len(timeline) - 3, 4):
        first = index if timeline[index + 1] >= timeline[index + 3] else index + 2
        kept.append(timeline[first])
        kept.append(timeline[first + 1])
    return kept


def peaked(site: Site, live_now: dict[Record, None]) -> None:
    """Perhaps a new peak of live pools at ``site``: keep it, and sample the thread count.

    Pools collected or drained since are still in ``live_now`` until their
    events are applied: apply them first (if the queue is free), then look again.
    """
    settle(site)
    if len(live_now) > site.peak_live:
        site.peak_live = len(live_now)
        site.registry.count_threads()


def abandon(record: Record) -> None:
    """The constructor of the pool of ``record`` raised: it was never built."""
    site = record.site
    site.failed += 1
    site.open.pop(record, None)
    state, mode = record.state, record.mode
    record.mode = "abandoned"
    if state > 0:  # applied already: built, then the constructor's caller got an exception
        submit(_Event(_UNDO, record, mode if state == 2 else None))


def end(record: Record, mode: str) -> None:
    """Record how the pool of ``record`` ended: its first shutdown (applied in batches)."""
    site = record.site
    site.open.pop(record, None)
    sample(site, time.monotonic())
    _queue_end(record, mode)


def _queue_end(record: Record, mode: str) -> None:
    record.mode = mode
    _append(record)
    if len(_events) >= BATCH:
        drain_soon()


def end_with(
    record: Record,
    mode: str,
    cancel: bool,
    pending: bool,
    threads: Optional[tuple[threading.Thread, ...]],
) -> None:
    """:func:`end`, with ``cancel_futures`` or work still pending at a ``wait=False``.

    A pool with work pending stays live while its workers run: it leaves its
    site's open set when they end, seen by a later report.
    """
    weak = tuple(weakref.ref(thread) for thread in threads) if pending and threads else None
    if weak is None:
        record.site.open.pop(record, None)
        sample(record.site, time.monotonic())
    stack = record.extra[0] if record.extra is not None else None
    record.extra = (stack, (bool(cancel), bool(pending), weak))
    _queue_end(record, mode)


# -- the registry: sites of one guard ----------------------------------------------


def _cwd() -> Optional[str]:
    import os

    try:
        return os.getcwd()
    except OSError:  # the directory was removed under us
        return None


class Registry:
    """The call sites seen by one guard."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.sites: dict[SiteKey, Site] = {}
        self.started = clock()
        self.started_wall = wall()
        #: The working directory when guarding began: reports show paths relative
        #: to it, wherever the program moves afterwards.
        self.started_cwd = _cwd()
        self.overflow = 0
        self.peak_threads = 0

    def site(
        self,
        key: SiteKey,
        creator: Frame,
        module: str,
        ignored: bool,
        at: float,
        configure: Callable[[Site], None],
        app_frame: Optional[Frame] = None,
    ) -> Optional[Site]:
        """The site for ``key``, made now if new; None once :data:`MAX_SITES` are kept.

        ``configure`` (the policy's) prepares a new site before anyone sees it.
        """
        sites = self.sites
        site = sites.get(key)
        if site is not None:
            return site
        if len(sites) >= MAX_SITES:
            submit(_Event(_OVERFLOW, self, at))
            return None
        site = Site(self, key, creator, module, ignored, at, app_frame)
        configure(site)
        # setdefault: two threads racing to add a site agree on one.
        return sites.setdefault(key, site)

    def count_threads(self) -> None:
        """Keep the process's peak thread count (sampled at new peaks of live pools)."""
        threads_now = len(_active)
        if threads_now > self.peak_threads:
            self.peak_threads = threads_now

    # -- reporting -------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Copy every site out, applying queued events and retiring finished pools first.

        Waits (briefly, sleeping) for another thread that is applying events;
        never for the call this one interrupted, which it cannot outwait: the
        copy is then taken as it stands.
        """
        deadline = None
        while True:
            exact = owned(self._counted_copy, lambda: None)
            if exact is not None:
                return exact  # type: ignore[no-any-return]
            now = time.monotonic()
            if deadline is None:
                deadline = now + _SNAPSHOT_PATIENCE
            if _owner.get(0) is not None and _owner.get(0) == _get_ident():
                recover()
                if not _owner:
                    continue
            if now >= deadline or _owned_here():
                return self._copy(exact=False)
            time.sleep(0.001)

    def _counted_copy(self) -> Snapshot:
        _count_open(list(self.sites.values()))
        return self._copy(exact=True)

    def _copy(self, exact: bool) -> Snapshot:
        open_workers: dict[Site, dict[Optional[int], int]] = {}
        for record in _unended(list(self.sites.values())):
            if record.state == 1:
                table = open_workers.setdefault(record.site, {})
                table[record.workers] = table.get(record.workers, 0) + 1
        sites = []
        for site in list(self.sites.values()):
            if exact and site.draining:
                _prune_all(site)
            sites.append(view(site, exact, open_workers.get(site)))
        sites.sort(key=lambda s: (-(s["created"] + s["refused"]), s["file"], s["line"]))
        return Snapshot(self, sites, self.clock() - self.started)

    def forget_records(self) -> None:
        """Drop the records of this registry's open pools (on uninstall or reset).

        Their shutdowns can no longer be observed, so they stay ``open`` instead
        of turning into false ``never`` findings when collected.
        """
        for record in _unended(list(self.sites.values())):
            record.mode = "forgotten"  # counted as created, and open for ever
            _append(record)


def _owned_here() -> bool:
    """Whether the current thread is (probably) the one applying events.

    Only consulted after a wait, to avoid waiting for ourselves: a report
    made by a signal handler or finalizer that interrupted the owner.
    """
    return running(sys._getframe(1), (drain.__code__, _apply_queue.__code__, owned.__code__))


def _unended(sites: list[Site]) -> list[Record]:
    """The records of the pools of ``sites`` not shut down (nor known to be collected)."""
    return [record for site in sites for record in list(site.open) if record.mode is None]


def _count_open(sites: list[Site]) -> None:
    """Count the open pools of ``sites`` not counted yet: queue them, apply the queue."""
    for record in _unended(sites):
        if record.state == 0:
            _append(record)
    _apply_queue()


def _timeline_view(timeline: array[float], started: float) -> list[tuple[float, int]]:
    """``[(seconds since the guard started, live pools), ...]`` from a site's timeline."""
    samples = timeline.tolist()  # one C call: a consistent copy even while it grows
    return [(samples[i] - started, int(samples[i + 1])) for i in range(0, len(samples) - 1, 2)]


def settle(site: Site) -> None:
    """Apply the queue and retire ``site``'s drained pools, if the queue is free now.

    Before a new peak of live pools is taken: pools collected or drained since
    their last look are still counted live until then.
    """
    owned(lambda: _prune_all(site) if site.draining else None, lambda: None)


def site_view(site: Site, building: Optional[tuple[str, str]] = None) -> dict[str, Any]:
    """One site's :func:`view`, exact when the queue is free now (never waits).

    ``building`` is ``(class name, thread name)`` of a pool under construction
    at ``site`` (a threshold crossing): counted as created, live and open.
    """

    def exact() -> dict[str, Any]:
        _count_open([site])
        return view(site, True)

    result: dict[str, Any] = owned(exact, lambda: view(site, False))
    if building is not None:
        cls, thread = building
        result["created"] += 1
        result["live"] += 1
        result["shutdown"]["open"] += 1
        _count(result["classes"], cls)
        _count(result["threads"], thread)
    return result


def view(
    site: Site, exact: bool = True, open_workers: Optional[dict[Optional[int], int]] = None
) -> dict[str, Any]:
    """One site's counts as a plain dict (raw frames, times relative to the guard's start).

    The keys are the report's site fields (see ``_schema``); this is the
    one place that maps the counting slots to them.
    """
    if exact:
        _fold(site)
    elif site.run:  # the owner folds; a copy of the numbers gets the run added
        site = _folded_copy(site)
    started = site.registry.started
    closed = site.context + site.wait + site.nowait + site.never
    max_workers = {str(k): v for k, v in dict(site.max_workers).items()}
    for k, v in (open_workers or {}).items():
        max_workers[str(k)] = max_workers.get(str(k), 0) + v
    return {
        "file": site.file,
        "line": site.line,
        "function": site.function,
        "module": site.module,
        "creator": site.creator,
        "app_frame": site.app_frame,
        "classes": dict(site.classes),
        "created": site.created,
        "refused": site.refused,
        "live": len(site.open),
        "peak_live": site.peak_live,
        "first_at": site.first_at - started,
        "last_at": site.last_at - started,
        "shutdown": {
            "context": site.context,
            "wait": site.wait,
            "nowait": site.nowait,
            "never": site.never,
            "open": max(0, site.created - closed),  # 3.9: see _apply_queue
        },
        "nowait_pending": site.nowait_pending,
        "cancel_futures": site.cancel_futures,
        "threads": dict(site.threads),
        "max_workers": max_workers,
        "stacks": sorted(((n, s) for s, n in dict(site.stacks).items()), key=lambda item: -item[0]),
        "timeline": _timeline_view(site.timeline, started),
        "stack_sampling": {
            "first": STACK_FIRST,
            "every": STACK_EVERY,
            "captured": site.captured,
            "dropped": site.stacks_dropped,
        },
        "churn": site.churn,
        "ignored": site.ignored,
    }


def _folded_copy(site: Site) -> Site:
    """A copy of ``site``'s numbers with its current run folded in (``site`` untouched)."""
    copy = Site.__new__(Site)
    for name in Site.__slots__:
        value = getattr(site, name, None)
        if isinstance(value, dict):
            value = dict(value)
        setattr(copy, name, value)
    _fold(copy)
    return copy


class Snapshot:
    """Everything a report needs, copied out of one registry at one moment."""

    __slots__ = ("elapsed", "overflow", "peak_threads", "sites", "started_cwd", "started_wall")

    def __init__(self, registry: Registry, sites: list[dict[str, Any]], elapsed: float) -> None:
        self.sites = sites
        self.elapsed = elapsed
        self.started_wall = registry.started_wall
        self.started_cwd = registry.started_cwd
        self.overflow = registry.overflow
        self.peak_threads = registry.peak_threads

    @property
    def pools(self) -> int:
        """Pools built, over every site."""
        return sum(site["created"] for site in self.sites)

    @property
    def refused(self) -> int:
        """Attempts refused, over every site."""
        return sum(site["refused"] for site in self.sites)


def live_records() -> int:
    """How many records are alive right now, anywhere (for tests and benchmarks).

    A record lives as long as its pool, and until its events are applied.
    """
    import gc

    return sum(1 for obj in gc.get_objects() if type(obj) is Record)
