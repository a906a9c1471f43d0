"""The registry in isolation: counting, bounds, the non-blocking event queue, fork."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from executor_guard import _config, _registry

from .helpers import KEY, Harness


class Pool:
    """Any weak-referenceable object stands in for a pool."""


class OtherPool:
    """A second pool class, to interleave classes at one site."""


def test_counts_modes_and_live_pools() -> None:
    harness = Harness(_config.Config(threshold=100))
    pools = [Pool() for _ in range(5)]
    for pool in pools:
        harness.create(pool)
    harness.close(pools[0], "context")
    harness.close(pools[1], "wait", True)
    harness.close(pools[2], "nowait")
    harness.close(pools[2], "wait")  # only the first shutdown counts
    del pools[3]
    site = harness.site()
    assert site["created"] == 5
    assert site["shutdown"] == {"context": 1, "wait": 1, "nowait": 1, "never": 1, "open": 1}
    assert site["cancel_futures"] == 1
    assert site["live"] == 1
    assert site["peak_live"] == 5


def test_the_number_of_sites_is_bounded_and_overflow_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_registry, "MAX_SITES", 5)
    harness = Harness(_config.Config())
    pools = [Pool() for _ in range(8)]
    for index, pool in enumerate(pools):
        harness.create(pool, ("/gen.py", index, "f"))
    snapshot = harness.registry.snapshot()
    assert len(snapshot.sites) == 5
    assert snapshot.overflow == 3
    assert snapshot.pools == 5


def test_distinct_names_and_stacks_per_site_are_bounded() -> None:
    harness = Harness(_config.Config(threshold=10**6))
    pools = []
    me = threading.current_thread()
    original = me.name
    try:
        for index in range(100):
            pools.append(pool := Pool())
            me.name = f"request-{index}"  # stand in for per-request threads
            harness.create(pool, stack=(("/app.py", index, "caller"), KEY))
    finally:
        me.name = original
    site = harness.site()
    assert len(site["threads"]) == _registry.MAX_NAMES + 1
    assert site["threads"][_registry.OTHER] == 100 - _registry.MAX_NAMES
    assert len(site["stacks"]) == _registry.MAX_STACKS
    assert site["stack_sampling"]["dropped"] == 100 - _registry.MAX_STACKS
    assert site["stack_sampling"]["captured"] == 100


def test_nowait_with_pending_work_stays_live_until_its_workers_end() -> None:
    """...and the draining pool's record holds no strong reference to its workers."""
    import weakref

    harness = Harness(_config.Config())
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    pool = Pool()
    harness.create(pool)
    harness.close(pool, "nowait", pending=True, threads=(worker,))
    site = harness.site()
    assert (site["live"], site["nowait_pending"]) == (1, 1)
    gone = weakref.ref(worker)
    release.set()
    worker.join()
    del worker
    assert gone() is None  # nothing of ours kept the thread object alive
    assert harness.site()["live"] == 0


def test_thread_names_and_classes_are_counted_exactly_when_they_alternate() -> None:
    harness = Harness(_config.Config(threshold=10**6))
    kept = []
    me = threading.current_thread()
    original = me.name
    plan = ["a", "a", "b", "a", "b", "b", "b", "a"]
    try:
        for index, name in enumerate(plan):
            me.name = name
            pool = Pool() if index % 3 else OtherPool()
            kept.append(pool)
            harness.create(pool)
            if index == 4:  # a snapshot in the middle of a run must not count it twice
                harness.registry.snapshot()
    finally:
        me.name = original
    site = harness.site()
    assert site["threads"] == {"a": 4, "b": 4}
    assert site["classes"] == {"Pool": 5, "OtherPool": 3}
    assert sum(site["threads"].values()) == site["created"] == len(plan)


# -- the event queue never blocks ---------------------------------------------------


def test_an_event_submitted_while_the_queue_is_owned_is_applied_by_the_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A finalizer or signal handler that records while we apply: deferred, not blocked."""
    harness = Harness(_config.Config(threshold=100))
    inner = Pool()
    calls = []
    original_fold = _registry._fold

    def fold_then_reenter(site: Any) -> None:
        original_fold(site)
        if not calls:
            calls.append(1)
            # Re-entrant: runs while the outer call owns the queue.
            harness.create(inner)
            harness.close(inner, "wait")
            assert len(_registry.TABLES.events) >= 2  # deferred, not applied yet

    monkeypatch.setattr(_registry, "_fold", fold_then_reenter)
    outer = Pool()
    harness.create(outer)
    harness.close(outer, "wait")
    _registry.drain()
    assert calls == [1]
    assert not _registry.TABLES.events
    assert not _registry.TABLES.owner
    site = harness.site()
    assert (site["created"], site["shutdown"]["wait"], site["live"]) == (2, 2, 0)


def test_an_exception_right_after_taking_the_queue_releases_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C between the acquisition and the work: the next pool still records."""
    harness = Harness(_config.Config(threshold=100))
    original_fold = _registry._fold
    raised = []

    def interrupted(site: Any) -> None:
        if not raised:
            raised.append(1)
            raise KeyboardInterrupt
        original_fold(site)

    monkeypatch.setattr(_registry, "_fold", interrupted)
    kept = [Pool(), Pool()]
    harness.create(kept[0])
    harness.close(kept[0], "wait")
    with pytest.raises(KeyboardInterrupt):
        _registry.drain()
    assert not _registry.TABLES.owner
    harness.create(kept[1])
    harness.close(kept[1], "wait")
    _registry.drain()
    assert not _registry.TABLES.events
    # The interrupted record stayed first in the queue: the next owner applied it.
    assert harness.site()["shutdown"]["wait"] == 2


def test_a_frozen_owner_never_blocks_recording_or_reporting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon thread frozen at interpreter exit while it owned the queue."""
    monkeypatch.setattr(_registry, "_SNAPSHOT_PATIENCE", 0.05)
    harness = Harness(_config.Config(threshold=100))
    _registry.TABLES.owner[0] = object()  # someone else owns it, for ever
    kept = [Pool() for _ in range(3)]
    for pool in kept:
        harness.create(pool)
        harness.close(pool, "wait")
    _registry.drain()
    assert len(_registry.TABLES.events) == 3  # queued, nothing waited
    started = time.monotonic()
    snapshot = harness.registry.snapshot()
    assert time.monotonic() - started < 5
    assert [site["file"] for site in snapshot.sites] == [KEY[0]]
    _registry.TABLES.owner.clear()
    assert harness.site()["created"] == 3


def test_counts_are_exact_under_concurrent_creations() -> None:
    harness = Harness(_config.Config(threshold=10**9))
    per_thread = 2_000

    def work() -> None:
        for _ in range(per_thread):
            pool = Pool()
            harness.create(pool)
            harness.close(pool, "wait")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    site = harness.site()
    assert site["created"] == 8 * per_thread
    assert site["shutdown"]["wait"] == 8 * per_thread
    assert site["live"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_empty_even_if_the_queue_was_owned() -> None:
    from executor_guard import _guard

    guard = _guard.install()
    keep = Pool()
    harness = Harness(_config.Config())
    harness.registry = guard.registry
    harness.create(keep)
    _registry.TABLES.owner[0] = object()  # another thread "owns" it at fork time
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                child = _guard.active_guard()
                assert child is not None and child.registry.snapshot().sites == []
                harness.registry = child.registry
                harness.create(Pool())
                code = 0 if child.registry.snapshot().pools == 1 else 2
            finally:
                os._exit(code)
    finally:
        _registry.TABLES.owner.clear()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert guard.registry.snapshot().pools == 1


def test_a_long_run_samples_its_timeline_sparsely_and_keeps_its_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once thinned, the hot path samples one gap apart and only lifts the last sample to a peak."""
    from concurrent.futures import ThreadPoolExecutor

    import executor_guard
    from executor_guard import _hooks

    calls = []
    real = _hooks._sample

    def counting(site: Any, at: float) -> None:
        calls.append(at)
        real(site, at)

    monkeypatch.setattr(_hooks, "_sample", counting)
    with executor_guard.guarded(threshold=10**6) as guard:
        held = []
        for index in range(5000):
            pool = ThreadPoolExecutor(1)  # one site: this line
            if index % 500 == 499:
                held.append(pool)  # a few stay open: the peak climbs slowly
            else:
                pool.shutdown()
    [site] = guard.report(process_figures=False).sites
    for pool in held:
        pool.shutdown()
    assert len(site["timeline"]) <= _registry.TIMELINE_SAMPLES
    assert max(live for _, live in site["timeline"]) == site["peak_live"] == 10
    assert len(calls) < 2000  # of 10,000 creations and shutdowns
