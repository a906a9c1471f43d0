"""The registry in isolation: counting, windows, milestones, bounds, fork."""

from __future__ import annotations

import os
import sys
import threading
from types import FrameType

import pytest

from executor_guard import _config, _registry
from executor_guard._registry import Registry, _milestone_after


class Pool:
    """Any weak-referenceable object stands in for a pool."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame() -> FrameType:
    return sys._getframe(1)


KEY = ("/app/service.py", 87, "listener")


def close(pool: Pool, mode: str, cancel: bool, pending: bool, threads: object) -> None:
    """Record a shutdown as the patched method does: through the pool's record."""
    record = _registry._records.get(id(pool))
    if record is not None:
        _registry.close(record, pool, mode, cancel, pending, threads)  # type: ignore[arg-type]


def make(config: _config.Config, clock: Clock) -> Registry:
    return Registry(config, clock=clock)


def create(
    registry: Registry, pool: Pool, key: tuple[str, int, str] = KEY
) -> tuple[object, object]:
    # Frames are passed, never stored in a local: a frame referring to itself
    # through a local would keep `pool` alive until the cycle collector runs.
    return registry.enter(pool, key, registry.sites.get(key), frame(), frame(), None)


def test_counts_modes_and_live_pools() -> None:
    registry = make(_config.Config(threshold=100), Clock())
    pools = [Pool() for _ in range(5)]
    for pool in pools:
        create(registry, pool)
    close(pools[0], "context", False, False, None)
    close(pools[1], "wait", True, False, None)
    close(pools[2], "nowait", False, False, None)
    close(pools[2], "wait", False, False, None)  # only the first shutdown counts
    del pools[3]
    site = registry.snapshot().sites[0]
    assert site.created == 5
    assert site.shutdown == {"context": 1, "wait": 1, "nowait": 1, "never": 1, "open": 1}
    assert site.cancel_futures == 1
    assert site.live == 1
    assert site.peak_live == 5
    assert site.findings == ["never_shutdown"]


def test_threshold_counts_over_the_process_lifetime_without_a_window() -> None:
    clock = Clock()
    registry = make(_config.Config(threshold=3), clock)
    crossings = []
    for _ in range(5):
        clock.now += 3600
        crossings.append(create(registry, Pool())[1])
    assert [c is not None for c in crossings] == [False, False, True, False, False]


def test_window_counts_only_recent_creations() -> None:
    clock = Clock()
    registry = make(_config.Config(threshold=3, window=10.0), clock)
    kept = []
    for _ in range(4):  # one creation every 6 s: never 3 within 10 s
        clock.now += 6
        _, crossing = create(registry, kept_pool := Pool())
        kept.append(kept_pool)
        assert crossing is None
    assert registry.snapshot().sites[0].churn is False
    clock.now += 0.5  # a third creation within 10 s of the two before it
    _, crossing = create(registry, kept_pool := Pool())
    kept.append(kept_pool)
    assert crossing is not None and crossing.first
    site = registry.snapshot().sites[0]
    assert site.churn is True
    assert site.first_at == pytest.approx(6.0)
    assert site.last_at == pytest.approx(24.5)


def test_raise_mode_refuses_from_the_threshold_on_and_creates_nothing() -> None:
    registry = make(_config.Config(mode="raise", threshold=3), Clock())
    results = [create(registry, Pool()) for _ in range(5)]
    assert [r is not None for r, _ in results] == [True, True, False, False, False]
    assert all(c is not None and c.refused for _, c in results[2:])
    site = registry.snapshot().sites[0]
    assert (site.created, site.refused) == (2, 3)


def test_milestones_grow_one_two_five() -> None:
    marks, count = [], 0
    for _ in range(7):
        count = _milestone_after(count, 10)
        marks.append(count)
    assert marks == [10, 20, 50, 100, 200, 500, 1000]
    assert _milestone_after(10, 10) == 20
    assert _milestone_after(1_000_000, 10) == 2_000_000


def test_the_number_of_sites_is_bounded_and_overflow_is_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_registry, "MAX_SITES", 5)
    registry = make(_config.Config(), Clock())
    pools = [Pool() for _ in range(8)]
    for index, pool in enumerate(pools):
        create(registry, pool, ("/gen.py", index, "f"))
    snapshot = registry.snapshot()
    assert len(snapshot.sites) == 5
    assert snapshot.overflow == 3
    assert snapshot.pools == 5


def test_distinct_names_and_stacks_per_site_are_bounded() -> None:
    registry = make(_config.Config(threshold=10**6), Clock())
    pools = []
    for index in range(100):
        pool = Pool()
        pools.append(pool)
        stack = (("/app.py", index, "caller"), KEY)
        # A distinct thread name per creation: stand in for per-request threads.
        threading.current_thread().name, old = f"request-{index}", threading.current_thread().name
        try:
            registry.enter(pool, KEY, registry.sites.get(KEY), frame(), frame(), stack)
        finally:
            threading.current_thread().name = old
    site = registry.snapshot().sites[0]
    assert len(site.threads) == _registry.MAX_NAMES + 1
    assert site.threads[_registry.OTHER] == 100 - _registry.MAX_NAMES
    assert len(site.stacks) == _registry.MAX_STACKS
    assert site.stacks_dropped == 100 - _registry.MAX_STACKS
    assert site.stacks_captured == 100


def test_nowait_with_pending_work_stays_live_until_its_workers_end() -> None:
    registry = make(_config.Config(), Clock())
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    pool = Pool()
    create(registry, pool)
    close(pool, "nowait", False, True, (worker,))
    site = registry.snapshot().sites[0]
    assert (site.live, site.nowait_pending) == (1, 1)
    release.set()
    worker.join()
    assert registry.snapshot().sites[0].live == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_starts_empty_with_a_working_lock_even_if_the_lock_was_held() -> None:
    from executor_guard import _guard

    guard = _guard.install()
    try:
        create(guard.registry, keep := Pool())
        _registry._lock.acquire()  # another thread "holds" the lock at fork time
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    child = _guard.active_guard()
                    assert child is not None and child.registry.snapshot().sites == []
                    create(child.registry, Pool())
                    code = 0 if child.registry.snapshot().pools == 1 else 2
                finally:
                    os._exit(code)
        finally:
            _registry._lock.release()
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert guard.registry.snapshot().pools == 1
        del keep
    finally:
        _guard.uninstall()


class OtherPool:
    """A second pool class, to interleave classes at one site."""


def test_thread_names_and_classes_are_counted_exactly_when_they_alternate() -> None:
    registry = make(_config.Config(threshold=10**6), Clock())
    kept = []
    me = threading.current_thread()
    original = me.name
    plan = ["a", "a", "b", "a", "b", "b", "b", "a"]
    try:
        for index, name in enumerate(plan):
            me.name = name
            pool = Pool() if index % 3 else OtherPool()
            kept.append(pool)
            create(registry, pool)
            # A snapshot in the middle of a run must not count it twice.
            if index == 4:
                registry.snapshot()
    finally:
        me.name = original
    site = registry.snapshot().sites[0]
    assert site.threads == {"a": 4, "b": 4}
    assert site.classes == {"Pool": 5, "OtherPool": 3}
    assert sum(site.threads.values()) == site.created == len(plan)


def test_a_lower_threshold_applies_to_sites_already_counting() -> None:
    registry = make(_config.Config(threshold=10), Clock())
    kept = [Pool() for _ in range(6)]
    crossings = [create(registry, pool)[1] for pool in kept[:4]]
    assert crossings == [None] * 4
    registry.reconfigure(_config.Config(threshold=5))
    assert create(registry, kept[4])[1] is not None  # the 5th creation crosses 5
    assert create(registry, kept[5])[1] is None  # warn mode acts once per site


def test_a_window_set_later_counts_from_then_on_and_can_be_dropped_again() -> None:
    clock = Clock()
    registry = make(_config.Config(threshold=3), clock)
    kept = [Pool() for _ in range(6)]
    create(registry, kept[0])
    registry.reconfigure(_config.Config(threshold=3, window=5.0))
    clock.now += 1
    assert create(registry, kept[1])[1] is None
    clock.now += 1
    assert create(registry, kept[2])[1] is None  # 3 creations, but 2 in the window
    clock.now += 1
    assert create(registry, kept[3])[1] is not None
    registry.reconfigure(_config.Config(threshold=3))
    create(registry, kept[4])
    assert registry.snapshot().sites[0].created == 5


def test_stacks_are_captured_for_the_first_creations_then_one_in_every_n() -> None:
    registry = make(_config.Config(threshold=10**9), Clock())
    captured = []
    kept = []
    for index in range(300):
        site = registry.sites.get(KEY)
        due = site is None or site.attempts >= site.next_sample
        if due:
            captured.append(index)
        pool = Pool()
        kept.append(pool)
        stack = (KEY,) if due else None
        registry.enter(pool, KEY, site, frame(), frame(), stack)
    first = list(range(_registry.STACK_FIRST))
    every = list(range(_registry.STACK_EVERY, 300, _registry.STACK_EVERY))
    assert captured == first + every
    assert registry.snapshot().sites[0].stacks_captured == len(captured)
