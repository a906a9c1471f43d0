"""Per-pool records and per-call-site statistics, kept under one lock.

The registry never holds a pool: each live pool has a :class:`Record`, which
*is* a weak reference to it (a ``weakref.ref`` subclass with slots, so the
record costs one small object). The weakref callback only appends to a deque,
which is safe from any thread and even from inside the locked section when the
garbage collector runs there; the deque is drained under the lock the next
time anything is recorded or reported.

Records are global (one table for every registry) so that a pool created under
one guard and shut down under another is still matched with its site.

Bounds, so that a pathological program cannot exhaust memory through us:
:data:`MAX_SITES` call sites (creations at further sites are counted as
overflow), :data:`MAX_STACKS` distinct stacks per site, :data:`MAX_NAMES`
distinct thread names and classes per site, and a ``deque`` of at most
``threshold`` timestamps per site when a window is set.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque

from ._callsite import describe, type_info, types
from ._diagnostics import internal_error
from ._pools import pending_and_workers

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Callable, Optional

    from ._callsite import Frame
    from ._config import Config

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
#: Draining records checked per creation (the rest wait for the next report).
_PRUNE_PER_CREATION = 4

OTHER = "(other)"
#: A count no site reaches: "no event pending".
_NEVER = 1 << 62

MODES = ("context", "wait", "nowait", "never", "open")

# Replaced wholesale in a forked child (see reset_after_fork).
_lock = threading.Lock()
# Bound methods: `with _lock:` costs four times as much on 3.13.0.
_acquire = _lock.acquire
_release = _lock.release
_records: dict[int, Record] = {}
_collected: deque[Record] = deque()
_current_thread = threading.current_thread
_get_ident = threading.get_ident
_active: dict[int, threading.Thread] = threading._active  # type: ignore[attr-defined]
_frames: dict[Frame, Frame] = {}


def _on_collect(record: Record) -> None:
    # Runs inside the garbage collector, possibly while this thread holds
    # _lock: it must not take the lock, so it only queues the record.
    _collected.append(record)


class Record(weakref.ref):  # type: ignore[type-arg]
    """One live pool: a weak reference to it plus what its end needs."""

    __slots__ = ("max_workers", "mode", "pool_id", "site", "threads")

    site: Site
    pool_id: int
    mode: Optional[str]
    max_workers: Optional[int]
    threads: Optional[tuple[threading.Thread, ...]]


class Site:
    """Mutable statistics of one call site; only touched under ``_lock``."""

    __slots__ = (
        "attempts",
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
        "last_at",
        "line",
        "live",
        "max_workers",
        "milestone",
        "module",
        "never",
        "next_event",
        "next_sample",
        "nowait",
        "nowait_pending",
        "peak_live",
        "refused",
        "registry",
        "run",
        "run_class",
        "run_thread",
        "stacks",
        "stacks_dropped",
        "threads",
        "times",
        "wait",
    )

    def __init__(
        self,
        registry: Registry,
        site: Frame,
        creator: Frame,
        module: str,
        ignored: bool,
        config: Config,
    ) -> None:
        self.registry = registry
        self.file, self.line, self.function = site
        self.creator = creator
        self.module = module
        self.ignored = ignored
        self.created = 0
        self.refused = 0
        #: created + refused: what the threshold counts.
        self.attempts = 0
        #: The attempt count at which Registry._event must run again: the
        #: threshold, a log milestone, never (ignored sites, warn after churn),
        #: or every time (0) when a window is set.
        self.next_event = 0
        #: The attempt count at which the next stack is captured.
        self.next_sample = 0 if config.stack_depth else _NEVER
        self.times: Optional[deque[float]] = None
        self.configure(config)
        self.live = 0
        self.peak_live = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.context = 0
        self.wait = 0
        self.nowait = 0
        self.never = 0
        self.nowait_pending = 0
        self.cancel_futures = 0
        self.threads: dict[str, int] = {}
        self.classes: dict[type, int] = {}
        # Consecutive creations by one thread name and class are counted in
        # `run` and folded into `threads`/`classes` when either changes (or at
        # a snapshot): one comparison per creation instead of two dict updates.
        self.run = 0
        self.run_thread: Optional[str] = None
        self.run_class: Optional[type] = None
        self.max_workers: dict[Optional[int], int] = {}
        self.stacks: dict[tuple[Frame, ...], int] = {}
        self.stacks_dropped = 0
        self.captured = 0
        self.churn = False
        self.milestone = 0
        self.draining: deque[Record] = deque()

    def configure(self, config: Config) -> None:
        """Apply ``config``'s threshold and window; the threshold is re-checked next time."""
        if config.window is None:
            self.times = None
        elif self.times is None or self.times.maxlen != config.threshold:
            self.times = deque(self.times or (), maxlen=config.threshold)
        self.next_event = _NEVER if self.ignored else 0
        if not config.stack_depth:
            self.next_sample = _NEVER
        elif self.next_sample == _NEVER:
            self.next_sample = self.attempts


class Crossing:
    """A call site crossed the churn threshold (or a later milestone) just now."""

    __slots__ = ("first", "refused", "site")

    def __init__(self, site: SiteSnapshot, refused: bool, first: bool) -> None:
        self.site = site
        self.refused = refused
        self.first = first


class _Plain:
    """Keyword-initialised slotted value objects (``dataclasses`` costs start-up time)."""

    __slots__ = ()

    def __init__(self, **fields: Any) -> None:
        missing: set[str] = set(self.__slots__) - set(fields)
        if missing:
            raise TypeError(f"missing fields: {sorted(missing)}")
        for name, value in fields.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        names: tuple[str, ...] = self.__slots__
        return all(getattr(self, n) == getattr(other, n) for n in names)

    __hash__ = None  # type: ignore[assignment]


class SiteSnapshot(_Plain):
    """An immutable copy of one site's statistics, safe to format outside the lock."""

    __slots__ = (
        "cancel_futures",
        "churn",
        "classes",
        "created",
        "creator",
        "file",
        "first_at",
        "function",
        "ignored",
        "last_at",
        "line",
        "live",
        "max_workers",
        "module",
        "nowait_pending",
        "peak_live",
        "refused",
        "shutdown",
        "stacks",
        "stacks_captured",
        "stacks_dropped",
        "threads",
    )

    file: str
    line: int
    function: str
    module: str
    creator: Frame
    classes: dict[str, int]
    created: int
    refused: int
    live: int
    peak_live: int
    first_at: float
    last_at: float
    shutdown: dict[str, int]
    nowait_pending: int
    cancel_futures: int
    threads: dict[str, int]
    max_workers: dict[str, int]
    stacks: list[tuple[int, tuple[Frame, ...]]]
    stacks_captured: int
    stacks_dropped: int
    churn: bool
    ignored: bool

    @property
    def location(self) -> str:
        """``file:line in function``, the way PRODUCT.md names a call site."""
        return f"{self.file}:{self.line} in {self.function}"

    @property
    def rate_per_min(self) -> Optional[float]:
        """Creations per minute between the first and the last one."""
        span = self.last_at - self.first_at
        if self.created + self.refused < 2 or span <= 0:
            return None
        return round((self.created + self.refused) * 60.0 / span, 1)

    @property
    def findings(self) -> list[str]:
        """PRODUCT.md's findings, in a fixed order."""
        if self.ignored:
            return []
        found = []
        if self.churn:
            found.append("churn")
        if self.nowait_pending:
            found.append("nowait_pending")
        if self.shutdown["never"]:
            found.append("never_shutdown")
        return found


class Snapshot(_Plain):
    """Everything a report needs, copied out of the registry at one moment."""

    __slots__ = (
        "config",
        "elapsed",
        "overflow",
        "peak_threads",
        "pools",
        "refused",
        "sites",
        "started_wall",
    )

    config: Config
    started_wall: float
    elapsed: float
    sites: list[SiteSnapshot]
    pools: int
    refused: int
    overflow: int
    peak_threads: int


def _milestone_after(count: int, threshold: int) -> int:
    """The next count at which ``log`` mode reports a churning site again.

    Milestones grow 1-2-5 times the threshold (10, 20, 50, 100, 200, ...), so a
    site creating a million pools logs about 15 events, not a million.
    """
    base = threshold
    while True:
        for factor in (1, 2, 5):
            if base * factor > count:
                return base * factor
        base *= 10


def _live(threads: Optional[tuple[threading.Thread, ...]]) -> bool:
    return threads is not None and any(thread.is_alive() for thread in threads)


def _prune(site: Site, limit: int) -> None:
    """Retire up to ``limit`` draining records, oldest first, whose workers all ended.

    Stops at the first record still running: pools drain roughly in creation
    order, and the rest are settled exactly at the next report.
    """
    draining = site.draining
    while draining and limit > 0 and not _live(getattr(draining[0], "threads", None)):
        draining.popleft().threads = None
        site.live -= 1
        limit -= 1


def _prune_all(site: Site) -> None:
    keep: deque[Record] = deque()
    for record in site.draining:
        if _live(getattr(record, "threads", None)):
            keep.append(record)
        else:
            record.threads = None
            site.live -= 1
    site.draining = keep


def _count(table: dict[Any, int], key: Any, n: int = 1) -> None:
    if key in table or len(table) < MAX_NAMES:
        table[key] = table.get(key, 0) + n
    else:
        table[OTHER] = table.get(OTHER, 0) + n


def _fold(site: Site) -> None:
    """Add the current run of same-thread, same-class creations to the tables."""
    if site.run:
        _count(site.threads, site.run_thread, site.run)
        _count(site.classes, site.run_class, site.run)
        site.run = 0


def _switch_run(site: Site, thread: str, cls: type) -> None:
    """A creation by another thread name or class than the last one: start a new run."""
    _fold(site)
    site.run_thread = thread
    site.run_class = cls


class Registry:
    """The call sites seen by one guard, and the process-wide counters."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sites: dict[Frame, Site] = {}
        self.started = clock()
        self.started_wall = wall()
        self.overflow = 0
        self.peak_threads = 0

    # -- hot path -------------------------------------------------------

    def enter(
        self,
        pool: object,
        key: Frame,
        site: Optional[Site],
        site_frame: FrameType,
        creator_frame: FrameType,
        stack: Optional[tuple[Frame, ...]],
    ) -> tuple[Optional[Record], Optional[Crossing]]:
        """Record that ``pool`` is being built at ``key`` (``site``: its entry, if seen).

        Returns the pool's record (None when it is refused or the site table is
        full) and a :class:`Crossing` when the policy has something to do.

        The common case (a known site, no threshold or milestone due, the same
        thread and class as the previous creation there) is a handful of
        attribute updates under the lock; everything else is in
        :meth:`_event` and :func:`_switch_run`.
        """
        now = self.clock()  # absolute; made relative to `started` at snapshot
        try:
            thread = _active[_get_ident()]._name  # type: ignore[attr-defined]
        except Exception:
            thread = _current_thread().name
        # Allocated before the lock: an allocation can run the garbage
        # collector, and a finalizer that builds a pool would deadlock on it.
        record = Record(pool, _on_collect)
        _acquire()
        try:
            if _collected:
                self._drain()
            if site is None:
                site = self.sites.get(key)
                if site is None:
                    if len(self.sites) >= MAX_SITES:
                        self.overflow += 1
                        return None, None
                    site = self._new_site(key, site_frame, creator_frame, now)
            site.last_at = now
            attempts = site.attempts = site.attempts + 1
            event = self._event(site, attempts, now) if attempts >= site.next_event else None
            if event is not None and event[0]:
                return None, Crossing(self._snapshot_site(site), refused=True, first=event[1])

            site.created += 1
            cls = type(pool)
            if thread is not site.run_thread or cls is not site.run_class:
                _switch_run(site, thread, cls)
            site.run += 1
            if site.draining:
                _prune(site, _PRUNE_PER_CREATION)
            live = site.live = site.live + 1
            if live > site.peak_live:
                site.peak_live = live
                self._count_threads()
            if stack is not None:
                self._add_stack(site, stack)

            # Only the two slots every path reads are set here; the others are
            # read with getattr(record, name, None) on the rarer paths.
            record.site = site
            record.pool_id = pool_id = id(pool)
            _records[pool_id] = record
            if event is not None:
                return record, Crossing(self._snapshot_site(site), refused=False, first=event[1])
        finally:
            _release()
        return record, None

    def _count_threads(self) -> None:
        """Keep the process's peak thread count.

        Sampled when a site reaches a new peak of live pools and when a stack
        is captured, not at every creation: thread pile-ups come with pool
        pile-ups, and the report adds the count at report time.
        """
        threads_now = len(_active)
        if threads_now > self.peak_threads:
            self.peak_threads = threads_now

    def _event(self, site: Site, attempts: int, now: float) -> Optional[tuple[bool, bool]]:
        """The threshold (or a milestone) may be due at ``site``: ``(refused, first)`` if it acts.

        Also moves ``site.next_event`` to the next count that needs this path.
        Sites with a window come here at every creation (``next_event`` 0).
        """
        config = self.config
        times = site.times
        if times is not None:
            times.append(now)
            if len(times) < config.threshold or now - times[0] > config.window:  # type: ignore[operator]
                return None
        elif attempts < config.threshold:
            site.next_event = config.threshold  # after a reconfiguration
            return None
        first = not site.churn
        site.churn = True
        if config.mode == "raise":
            site.refused += 1
            return True, first  # every further attempt is refused
        if config.mode == "log":
            if not first and attempts < site.milestone:
                return None
            site.milestone = _milestone_after(attempts, config.threshold)
            if times is None:
                site.next_event = site.milestone
            return False, first
        if times is None:
            site.next_event = _NEVER  # warn (and record-only) act once per site
        return (False, first) if first else None

    def _add_stack(self, site: Site, stack: tuple[Frame, ...]) -> None:
        # The next creation to capture: every one of the first STACK_FIRST,
        # then one in STACK_EVERY (read unlocked by the caller: a race only
        # captures one stack more or less).
        attempts = site.attempts
        if attempts < STACK_FIRST:
            site.next_sample = attempts
        else:
            site.next_sample = (attempts // STACK_EVERY + 1) * STACK_EVERY
        self._count_threads()
        site.captured += 1
        seen = site.stacks.get(stack)
        if seen is not None:
            site.stacks[stack] = seen + 1
        elif len(site.stacks) < MAX_STACKS:
            site.stacks[self._intern(stack)] = 1
        else:
            site.stacks_dropped += 1

    def _new_site(
        self, key: Frame, site_frame: FrameType, creator_frame: FrameType, now: float
    ) -> Site:
        config = self.config
        module = site_frame.f_globals.get("__name__", "")
        if not isinstance(module, str):
            module = ""
        creator = key if creator_frame is site_frame else describe(creator_frame)
        ignored = bool(config.ignore) and _ignored(key, module, config.ignore)
        site = Site(self, key, creator, module, ignored, config)
        site.first_at = now
        self.sites[key] = site
        return site

    @staticmethod
    def _intern(stack: tuple[Frame, ...]) -> tuple[Frame, ...]:
        if len(_frames) >= _MAX_INTERNED:
            return stack
        return tuple(_frames.setdefault(frame, frame) for frame in stack)

    # -- corrections on rare paths --------------------------------------

    def abandon(self, record: Record, *, refused: bool) -> None:
        """Undo a creation whose constructor raised (``refused``: by a warning filter)."""
        with _lock:
            if _records.get(record.pool_id) is record:
                del _records[record.pool_id]
            site = record.site
            record.mode = "abandoned"
            site.created -= 1
            site.live -= 1
            if refused:
                site.refused += 1
            else:
                site.attempts -= 1

    # -- shutdown and collection ----------------------------------------

    @staticmethod
    def _drain() -> None:
        """Account for pools collected without shutdown (call with ``_lock`` held)."""
        while _collected:
            record = _collected.popleft()
            if getattr(record, "mode", None) is not None:
                continue
            if _records.get(record.pool_id) is record:
                del _records[record.pool_id]
            record.mode = "never"
            site = record.site
            site.never += 1
            site.live -= 1
            _count(site.max_workers, getattr(record, "max_workers", None))

    # -- reporting -------------------------------------------------------

    def _snapshot_site(
        self, site: Site, open_workers: Optional[dict[str, int]] = None
    ) -> SiteSnapshot:
        _fold(site)
        closed = site.context + site.wait + site.nowait + site.never
        max_workers = {str(k): v for k, v in site.max_workers.items()}
        if open_workers:
            for k, v in open_workers.items():
                max_workers[k] = max_workers.get(k, 0) + v
        stacks = sorted(((n, s) for s, n in site.stacks.items()), key=lambda item: -item[0])
        return SiteSnapshot(
            file=site.file,
            line=site.line,
            function=site.function,
            module=site.module,
            creator=site.creator,
            classes={
                cls.__name__ if isinstance(cls, type) else str(cls): n
                for cls, n in site.classes.items()
            },
            created=site.created,
            refused=site.refused,
            live=site.live,
            peak_live=site.peak_live,
            first_at=site.first_at - self.started,
            last_at=site.last_at - self.started,
            shutdown={
                "context": site.context,
                "wait": site.wait,
                "nowait": site.nowait,
                "never": site.never,
                "open": site.created - closed,
            },
            nowait_pending=site.nowait_pending,
            cancel_futures=site.cancel_futures,
            threads=dict(site.threads),
            max_workers=max_workers,
            stacks=stacks,
            stacks_captured=site.captured,
            stacks_dropped=site.stacks_dropped,
            churn=site.churn,
            ignored=site.ignored,
        )

    def snapshot(self) -> Snapshot:
        """Copy every site out, retiring finished and collected pools first."""
        with _lock:
            if _collected:
                self._drain()
            open_workers: dict[Site, dict[str, int]] = {}
            for record in list(_records.values()):
                site = record.site
                if site.registry is self:
                    table = open_workers.setdefault(site, {})
                    key = str(getattr(record, "max_workers", None))
                    table[key] = table.get(key, 0) + 1
            sites = []
            for site in self.sites.values():
                if site.draining:
                    _prune_all(site)
                sites.append(self._snapshot_site(site, open_workers.get(site)))
            elapsed = self.clock() - self.started
        sites.sort(key=lambda s: (-(s.created + s.refused), s.file, s.line))
        return Snapshot(
            config=self.config,
            started_wall=self.started_wall,
            elapsed=elapsed,
            sites=sites,
            # Derived, not counted on the hot path.
            pools=sum(s.created for s in sites),
            refused=sum(s.refused for s in sites),
            overflow=self.overflow,
            peak_threads=self.peak_threads,
        )

    def reconfigure(self, config: Config) -> None:
        """Apply a new configuration; every site re-checks its threshold at its next creation."""
        with _lock:
            self.config = config
            for site in self.sites.values():
                site.configure(config)

    def forget_records(self) -> None:
        """Drop the records of this registry's open pools (on uninstall or reset).

        Their shutdowns can no longer be observed, so they stay ``open`` instead
        of turning into false ``never`` findings when collected.
        """
        with _lock:
            for pool_id, record in list(_records.items()):
                if record.site.registry is self:
                    del _records[pool_id]


def on_shutdown(
    pool: object,
    record: Record,
    wait: object,
    cancel_futures: object,
    frame: Optional[FrameType],
) -> None:
    """The patched ``shutdown``'s hook: record how ``pool`` ends (first shutdown only).

    ``context`` when the caller, past the class's own ``shutdown`` overrides,
    is an ``__exit__`` of the class (a ``with`` block). Never raises.
    """
    try:
        if record() is not pool:
            return
        if not wait:
            pending, threads = pending_and_workers(pool)
            close(record, pool, "nowait", cancel_futures, pending, threads)
            return
        info = types.get(type(pool)) or type_info(type(pool))
        skip = info.shutdown
        while frame is not None and id(frame.f_code) in skip:
            frame = frame.f_back
        context = frame is not None and id(frame.f_code) in info.exit
        close(record, pool, "context" if context else "wait", cancel_futures, False, None)
    except Exception as exc:
        internal_error("recording a pool shutdown", exc)


def close(
    record: Record,
    pool: object,
    mode: str,
    cancel_futures: object,
    pending: bool,
    threads: Optional[tuple[threading.Thread, ...]],
) -> None:
    """Record the first shutdown of ``pool`` (whose record is ``record``).

    Later shutdowns of the same pool find no record and change nothing.
    """
    if record() is not pool:
        return
    _acquire()
    try:
        # Only the first shutdown finds the record (the pool is alive, so no
        # other record can be filed under its id).
        if _records.pop(record.pool_id, None) is not record:
            return
        record.mode = mode
        site = record.site
        if mode == "wait":
            site.wait += 1
        elif mode == "context":
            site.context += 1
        else:
            site.nowait += 1
        if cancel_futures:
            site.cancel_futures += 1
        try:
            workers = record.max_workers
        except AttributeError:  # the constructor has not returned yet
            workers = None
        table = site.max_workers
        if workers in table:
            table[workers] += 1
        else:
            _count(table, workers)
        if pending:
            site.nowait_pending += 1
            if _live(threads):
                record.threads = threads
                site.draining.append(record)
                return
        site.live -= 1
    finally:
        _release()


def _ignored(key: Frame, module: str, patterns: tuple[str, ...]) -> bool:
    import fnmatch

    file, line, function = key
    candidates = (f"{file}:{line}", file, f"{module}.{function}", os.path.basename(file))
    return any(fnmatch.fnmatchcase(c, p) for p in patterns for c in candidates)


def reset_after_fork() -> None:
    """Give a forked child a fresh lock and empty tables.

    Another thread of the parent may have held the lock at the moment of the
    fork; that thread does not exist in the child, so the lock is replaced, not
    released.
    """
    global _lock, _acquire, _release
    _lock = threading.Lock()
    _acquire = _lock.acquire
    _release = _lock.release
    # Emptied in place: the patched methods hold these objects themselves.
    _records.clear()
    _collected.clear()


def live_records() -> int:
    """How many pools are being tracked right now (for tests and benchmarks)."""
    return len(_records)
