"""The shapes of pool churn the guard must flag, and the healthy shapes it must not."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import executor_guard

from .helpers import line_of

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")


def double(x: int) -> int:
    return 2 * x


def per_call_with_block(x: int) -> int:
    with ThreadPoolExecutor(max_workers=2) as pool:  # per-call with block
        return pool.submit(double, x).result()


def test_a_with_block_per_call_is_churn_with_every_pool_ended_by_context() -> None:
    with executor_guard.guarded() as guard:
        results = [per_call_with_block(i) for i in range(25)]
    assert results == [2 * i for i in range(25)]
    site = guard.report().to_dict()["sites"][0]
    assert site["line"] == line_of(per_call_with_block, "per-call with block")
    assert site["created"] == 25
    assert site["shutdown"] == {"context": 25, "wait": 0, "nowait": 0, "never": 0, "open": 0}
    assert site["findings"] == ["churn"]
    assert site["live"] == 0
    assert site["peak_live"] == 1


def leak_one() -> None:
    pool = ThreadPoolExecutor(max_workers=1)  # dropped without shutdown
    pool.submit(double, 1).result()


def test_a_pool_dropped_without_shutdown_is_never() -> None:
    with executor_guard.guarded() as guard:
        leak_one()
        gc.collect()
    site = guard.report().to_dict()["sites"][0]
    assert site["line"] == line_of(leak_one, "dropped without shutdown")
    assert site["shutdown"]["never"] == 1
    assert site["findings"] == ["never_shutdown"]
    assert site["live"] == 0


def process_batch(batch: list[int]) -> list[int]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:  # per batch
        return list(pool.map(double, batch))


def test_a_process_pool_per_batch_is_churn() -> None:
    with executor_guard.guarded(threshold=3) as guard:
        out = [process_batch([i, i + 1]) for i in range(3)]
    assert out == [[0, 2], [2, 4], [4, 6]]
    site = guard.report().to_dict()["sites"][0]
    assert site["line"] == line_of(process_batch, "per batch")
    assert site["classes"] == {"ProcessPoolExecutor": 3}
    assert site["shutdown"]["context"] == 3
    assert site["findings"] == ["churn"]


def create_here() -> None:
    ThreadPoolExecutor(1).shutdown(wait=False)  # concurrent site


def test_four_threads_creating_at_once_are_counted_exactly() -> None:
    per_thread = 400
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(per_thread):
            create_here()

    with executor_guard.guarded(threshold=50) as guard:
        threads = [threading.Thread(target=worker, name=f"creator-{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    report = guard.report().to_dict()
    site = report["sites"][0]
    assert site["created"] == 4 * per_thread
    assert site["threads"] == {f"creator-{i}": per_thread for i in range(4)}
    assert site["shutdown"]["nowait"] == 4 * per_thread
    assert site["shutdown"]["open"] == 0
    assert report["totals"]["pools"] == 4 * per_thread
    assert site["stack_sampling"]["captured"] <= site["created"]


def test_one_shared_pool_used_for_many_tasks_is_not_a_finding() -> None:
    with executor_guard.guarded(threshold=2) as guard, ThreadPoolExecutor(max_workers=4) as pool:
        assert sum(pool.map(double, range(5000))) == 2 * sum(range(5000))
    report = guard.report().to_dict()
    assert report["totals"]["pools"] == 1
    assert report["totals"]["sites_with_findings"] == 0


def test_many_sites_creating_once_each_are_not_findings() -> None:
    namespace: dict[str, object] = {"ThreadPoolExecutor": ThreadPoolExecutor}
    source = "\n".join(f"ThreadPoolExecutor(1).shutdown()  # site {i}" for i in range(40))
    with executor_guard.guarded(threshold=2) as guard:
        exec(compile(source, "<generated sites>", "exec"), namespace)
    report = guard.report().to_dict()
    assert report["totals"]["pools"] == 40
    assert report["totals"]["sites"] == 40
    assert report["totals"]["sites_with_findings"] == 0


async def use_default_executor() -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, double, 21)  # app line


def test_a_library_made_pool_is_attributed_to_the_application_line_and_not_flagged() -> None:
    with executor_guard.guarded(threshold=2) as guard:
        assert asyncio.run(use_default_executor()) == 42
    report = guard.report().to_dict()
    assert report["totals"]["pools"] == 1
    site = report["sites"][0]
    assert site["line"] == line_of(use_default_executor, "app line")
    assert site["function"] == "use_default_executor"
    assert "asyncio" in site["creator"]["file"]
    assert site["findings"] == []
    assert site["shutdown"]["wait"] + site["shutdown"]["context"] == 1
