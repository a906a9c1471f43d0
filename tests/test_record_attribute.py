"""Where a pool's record lives: on the pool, for exactly as long as the pool."""

from __future__ import annotations

import gc
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import executor_guard
from executor_guard import _registry

ATTR = _registry.RECORD_ATTR


def test_the_class_default_is_there_while_installed_and_gone_after() -> None:
    assert ATTR not in vars(ThreadPoolExecutor)
    executor_guard.install(mode="log")
    try:
        assert vars(ThreadPoolExecutor)[ATTR] is None
    finally:
        executor_guard.uninstall()
    assert ATTR not in vars(ThreadPoolExecutor)


def test_a_pool_built_before_the_guard_shuts_down_unrecorded() -> None:
    early = ThreadPoolExecutor(1)
    with executor_guard.guarded(mode="log") as guard:
        early.shutdown()  # reads the class default: nothing filed, nothing counted
        late = ThreadPoolExecutor(1)
        late.shutdown()
    sites = guard.report().to_dict()["sites"]
    assert [s["created"] for s in sites] == [1]


def test_the_record_goes_with_its_pool() -> None:
    with executor_guard.guarded(mode="log"):
        _registry.drain()
        before = _registry.live_records()
        pool = ThreadPoolExecutor(1)
        assert type(vars(pool)[ATTR]) is _registry.Record
        assert _registry.live_records() == before + 1
        pool.shutdown()
        del pool
        gc.collect()
        _registry.drain()  # its end and its collection, applied: nothing holds it now
        assert _registry.live_records() == before


def test_a_subclass_that_forbids_unknown_attributes_is_still_recorded() -> None:
    known = set(vars(ThreadPoolExecutor(1)))

    class Strict(ThreadPoolExecutor):
        def __setattr__(self, name: str, value: Any) -> None:
            if name not in known:
                raise AttributeError(f"{type(self).__name__} takes no attribute {name!r}")
            super().__setattr__(name, value)

    with executor_guard.guarded(mode="log", threshold=10**6) as guard:
        for _ in range(100):  # one line: past the first, the hot path's creations
            pool = Strict(1)
            pool.submit(int).result()
            pool.shutdown()
    site = guard.report().to_dict()["sites"][0]
    assert site["created"] == 100
    assert site["shutdown"]["wait"] == 100


def test_a_delegating_executor_is_never_asked_for_the_record() -> None:
    asked: list[str] = []

    class Delegating(Executor):
        def __init__(self) -> None:
            self.inner = ThreadPoolExecutor(1)

        def __getattr__(self, name: str) -> Any:
            asked.append(name)
            return getattr(self.inner, name)

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            self.inner.shutdown(wait)

    with executor_guard.guarded(mode="log") as guard, Delegating():
        pass
    assert asked == []
    site = guard.report().to_dict()["sites"][0]
    assert site["shutdown"]["wait"] == 1  # the inner pool, by its own shutdown
