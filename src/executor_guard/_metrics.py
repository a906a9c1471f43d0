"""OpenTelemetry instruments for fleets: the registry's per-site counts, read at collection.

``metrics="otel"`` (``EXECUTOR_GUARD_METRICS=otel``, ``--metrics otel``) registers
four observable instruments on the host's global ``MeterProvider``:

* ``executor_guard.pools.created`` (counter, cumulative): pools built per site;
* ``executor_guard.pools.live`` (gauge): pools of the site not ended now;
* ``executor_guard.pools.peak_live`` (gauge): the most of them live at once;
* ``executor_guard.sites.with_findings`` (gauge, no attributes): sites with a finding.

Per-site points carry ``code.filepath``, ``code.lineno``, ``code.function``,
``pool.class`` and ``finding``. Why it is built this way:

* **Nothing on the hot path.** The hooks are not touched: the callbacks take a
  registry snapshot (``Guard.snapshot()``, which never waits for the call it
  interrupted and waits at most a second for another thread) when the SDK
  collects. No thread of ours; the host's reader decides when.
* **Never configures the SDK.** The meter comes from the API's global
  ``metrics.get_meter()``. With no provider set, that is the API's proxy: its
  instruments forward to a provider the host sets *later* (the guard usually
  installs at interpreter start, before the application configures
  OpenTelemetry), and until then they cost nothing and are never read.
* **Importing OpenTelemetry only when asked.** This module imports nothing of
  OpenTelemetry at import time; :func:`enable` does. A missing
  ``opentelemetry-api`` is one line and the guard keeps working.
* **One data point per site and instrument.** ``pool.class`` is the site's
  dominant class (the one it built most; ties by name) and ``finding`` its
  findings comma-joined in the report's order (``churn,never_shutdown``) or
  ``none``. A site whose findings change therefore moves to a new series:
  alert on ``sum without (finding, pool_class)``.
* **Bounded cardinality.** The registry keeps at most ``MAX_SITES`` (4096) sites;
  the SDK's default limit is 2000 points per instrument. So at most
  :data:`MAX_SERIES_SITES` sites get series of their own, per process; the rest
  (and the registry's overflow creations) are summed into one series whose
  location attributes are ``(other)``. Membership is sticky: a site admitted
  keeps its series, one that was not stays in ``(other)``, so every counter
  series only grows. Sites with findings are admitted first.
* **Fork.** The callbacks look the guard up at each collection, so a forked
  child's instruments (inherited with the interpreter) read the child's own,
  emptied guard; the membership table and the cached snapshot start empty.
* **Never raises into the SDK.** Any failure is one ``internal error`` line
  (once) and an empty observation.
"""

from __future__ import annotations

import os
import threading
import time

from ._diagnostics import internal_error, say
from ._schema import FINDINGS, findings
from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Optional, Union

    from opentelemetry.metrics import CallbackOptions, Observation

    from ._guard import Guard
    from ._registry import Snapshot

    AttributeValue = Union[str, int]
    Attributes = dict[str, AttributeValue]

#: The instruments' names (README, "Metrics for fleets").
CREATED = "executor_guard.pools.created"
LIVE = "executor_guard.pools.live"
PEAK_LIVE = "executor_guard.pools.peak_live"
WITH_FINDINGS = "executor_guard.sites.with_findings"

#: Sites with series of their own, per process; the rest share the ``(other)`` series.
#: Well below the SDK's default cardinality limit (2000 points per instrument).
MAX_SERIES_SITES = 256
#: The location of the shared series for sites past :data:`MAX_SERIES_SITES`.
OTHER = "(other)"
#: ``pool.class`` of a site that built no pool (every attempt refused).
NO_CLASS = "(none)"
#: A snapshot taken by the first instrument's callback serves the others of the
#: same collection if it is at most this old (seconds).
REUSE_FOR = 1.0

KINDS = ("otel",)


class _Table:
    """One collection's rows: ``(attributes, created, live, peak_live)``, and the findings count."""

    __slots__ = ("at", "rows", "with_findings")

    def __init__(
        self, at: float, rows: list[tuple[Attributes, int, int, int]], with_findings: int
    ) -> None:
        self.at = at
        self.rows = rows
        self.with_findings = with_findings


class _Group:
    """The sites sharing one ``(file, line, function)``: their summed counts."""

    __slots__ = ("classes", "created", "found", "live", "peak_live")

    def __init__(self) -> None:
        self.created = 0
        self.live = 0
        self.peak_live = 0
        self.classes: dict[str, int] = {}
        self.found: set[str] = set()

    def add(self, view: dict[str, Any], found: list[str]) -> None:
        self.created += int(view["created"])
        self.live += int(view["live"])
        self.peak_live = max(self.peak_live, int(view["peak_live"]))
        for name, count in view["classes"].items():
            self.classes[name] = self.classes.get(name, 0) + int(count)
        self.found.update(found)

    def merge(self, other: _Group) -> None:
        self.created += other.created
        self.live += other.live
        self.peak_live = max(self.peak_live, other.peak_live)
        for name, count in other.classes.items():
            self.classes[name] = self.classes.get(name, 0) + count
        self.found |= other.found

    def attributes(self, file: str, line: int, function: str) -> Attributes:
        classes = self.classes
        dominant = min(classes, key=lambda name: (-classes[name], name)) if classes else NO_CLASS
        finding = ",".join(f for f in FINDINGS if f in self.found) or "none"
        return {
            "code.filepath": file,
            "code.lineno": line,
            "code.function": function,
            "pool.class": dominant,
            "finding": finding,
        }


class _Metrics:
    """This module's state: whether instruments exist in this process, and what they read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: Instruments are registered (inherited by a forked child: not again there).
        self.enabled = False
        #: ``opentelemetry-api`` could not be imported (said once).
        self.unavailable = False
        self.instruments: list[object] = []
        #: The ``Observation`` class, imported by :func:`enable`.
        self.observation: Any = None
        #: Sites with series of their own (sticky; at most MAX_SERIES_SITES).
        self.admitted: dict[tuple[str, int, str], None] = {}
        self.table: Optional[_Table] = None

    def reset(self) -> None:
        """Back to a freshly imported module (tests); the old instruments are the SDK's."""
        self.lock = threading.Lock()
        self.enabled = False
        self.unavailable = False
        self.instruments = []
        self.observation = None
        self.admitted = {}
        self.table = None

    def after_fork(self) -> None:
        """The child keeps its instruments; what they read is the child's own."""
        self.lock = threading.Lock()
        self.admitted = {}
        self.table = None


_METRICS = _Metrics()
STATE.register("metrics", _METRICS)


def enable(kind: str) -> None:
    """Register the guard's instruments on the global meter provider, once per process.

    ``kind`` is ``"otel"`` (the only kind; validated by the configuration).
    Never raises: a missing ``opentelemetry-api`` is one line, any other
    failure one internal-error line, and the guard runs on without metrics.
    """
    if kind not in KINDS:
        say(f"metrics={kind!r} is not a kind of metrics (expected one of {', '.join(KINDS)})")
        return
    state = _METRICS
    with state.lock:
        if state.enabled or state.unavailable:
            return
        try:
            from opentelemetry import metrics
        except ImportError:
            state.unavailable = True
            say(
                "metrics=otel needs opentelemetry-api, which is not installed: "
                "running without metrics (pip install 'executor-guard[otel]')"
            )
            return
        except Exception as exc:
            internal_error("enabling metrics", exc)
            return
        try:
            from ._version import __version__

            # The API's global meter: the host's provider, or the proxy that
            # forwards to the one it sets later. Never one of ours.
            meter = metrics.get_meter("executor_guard", __version__)
            # Registered in this order on purpose: the first one's callback
            # refreshes the snapshot the others of the same collection reuse.
            state.instruments = [
                meter.create_observable_counter(
                    CREATED,
                    callbacks=[_observe_created],
                    unit="{pool}",
                    description="Pools created at this call site (executor_guard).",
                ),
                meter.create_observable_gauge(
                    LIVE,
                    callbacks=[_observe_live],
                    unit="{pool}",
                    description="Pools of this call site not shut down yet (executor_guard).",
                ),
                meter.create_observable_gauge(
                    PEAK_LIVE,
                    callbacks=[_observe_peak_live],
                    unit="{pool}",
                    description="Most pools of this call site live at once (executor_guard).",
                ),
                meter.create_observable_gauge(
                    WITH_FINDINGS,
                    callbacks=[_observe_with_findings],
                    unit="{site}",
                    description="Call sites with a finding: churn, nowait_pending, "
                    "never_shutdown (executor_guard).",
                ),
            ]
            state.observation = metrics.Observation
            state.enabled = True
        except Exception as exc:
            internal_error("registering metrics", exc)


def enabled() -> bool:
    """Whether this process registered the instruments."""
    return _METRICS.enabled


# -- the callbacks (called by the host's SDK when it collects) -----------------------


def _observe_created(options: CallbackOptions) -> Iterable[Observation]:
    return _observe(1, fresh=True)


def _observe_live(options: CallbackOptions) -> Iterable[Observation]:
    return _observe(2, fresh=False)


def _observe_peak_live(options: CallbackOptions) -> Iterable[Observation]:
    return _observe(3, fresh=False)


def _observe_with_findings(options: CallbackOptions) -> Iterable[Observation]:
    try:
        table = _current(fresh=False)
        if table is None:
            return []
        observation = _METRICS.observation
        return [observation(table.with_findings)]
    except Exception as exc:
        internal_error("reading metrics", exc)
        return []


def _observe(index: int, fresh: bool) -> Iterable[Observation]:
    """One observation per row for column ``index``; nothing (and one line) on failure."""
    try:
        table = _current(fresh)
        if table is None:
            return []
        observation = _METRICS.observation
        return [observation(row[index], row[0]) for row in table.rows]
    except Exception as exc:
        internal_error("reading metrics", exc)
        return []


def _current(fresh: bool) -> Optional[_Table]:
    """The rows to observe: a new snapshot, or the one this collection already took."""
    state = _METRICS
    now = time.monotonic()
    table = state.table
    if not fresh and table is not None and now - table.at <= REUSE_FOR:
        return table
    guard = _guard_to_read()
    if guard is None:
        state.table = None
        return None
    table = build(guard.snapshot(), now)
    state.table = table
    return table


def _guard_to_read() -> Optional[Guard]:
    """The guard ``install()`` made (the one that enabled metrics), else the active one.

    The installed guard, not the active one, so that a ``guarded()`` block
    (which suspends it and records into a registry of its own) cannot make
    the exported counters jump down and back up.
    """
    from ._guard import installed_guard

    return installed_guard()


def build(snapshot: Snapshot, at: float = 0.0) -> _Table:
    """The rows for ``snapshot``: one per admitted ``(file, line, function)``, plus ``(other)``.

    Sites that differ only by their creator share one location and so one
    row (summed counts, the larger peak, the union of findings). New
    locations are admitted while fewer than :data:`MAX_SERIES_SITES` are,
    those with findings first, then by pools created.
    """
    groups: dict[tuple[str, int, str], _Group] = {}
    with_findings = 0
    for view in snapshot.sites:
        found = findings(view)
        if found:
            with_findings += 1
        key = (_path(view["file"]), int(view["line"]), str(view["function"]))
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
        group.add(view, found)
    admitted = _METRICS.admitted
    if len(admitted) < MAX_SERIES_SITES:
        newcomers = [key for key in groups if key not in admitted]
        newcomers.sort(key=lambda key: (not groups[key].found, -groups[key].created, key))
        for key in newcomers[: MAX_SERIES_SITES - len(admitted)]:
            admitted[key] = None
    rows: list[tuple[Attributes, int, int, int]] = []
    other: Optional[_Group] = None
    for key, group in groups.items():
        if key in admitted:
            rows.append((group.attributes(*key), group.created, group.live, group.peak_live))
        else:
            if other is None:
                other = _Group()
            other.merge(group)
    if snapshot.overflow:
        if other is None:
            other = _Group()
        other.created += snapshot.overflow
    if other is not None:
        rows.append((other.attributes(OTHER, 0, OTHER), other.created, other.live, other.peak_live))
    return _Table(at, rows, with_findings)


def _path(file: str) -> str:
    """The file as the JSON report writes it (absolute, unless ``<string>``-like)."""
    if file.startswith("<") or os.path.isabs(file):
        return file
    return os.path.abspath(file)
