"""``nowait_pending``: work still unfinished when ``shutdown(wait=False)`` returned.

It must be decided by the work, not by how far a worker thread has got in its
own bookkeeping, so that ``--fail-on any`` gives the same answer on every run
of a program whose pending work is the same every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import executor_guard
from executor_guard._pools import pending_and_workers


def test_a_collected_result_is_not_pending_while_the_worker_is_still_finishing() -> None:
    """Between the result being set and the worker counting itself idle, work is done.

    A done-callback that blocks holds the worker there deterministically
    (it runs inside ``set_result``, after the future is done).
    """
    go, hold = threading.Event(), threading.Event()
    pool = ThreadPoolExecutor(1)
    try:
        future = pool.submit(go.wait, 30)
        future.add_done_callback(lambda _: hold.wait(30))  # added before the work ends
        go.set()
        assert future.result(timeout=30) is True
        pending, threads = pending_and_workers(pool)
        assert threads  # the worker is there, not yet idle ...
        assert pending is False  # ... but the work has finished
    finally:
        hold.set()
        pool.shutdown()


def test_running_work_is_pending() -> None:
    started, hold = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        hold.wait(30)

    pool = ThreadPoolExecutor(1)
    try:
        pool.submit(work)
        assert started.wait(30)
        assert pending_and_workers(pool)[0] is True
    finally:
        hold.set()
        pool.shutdown()


def test_queued_work_is_pending() -> None:
    hold = threading.Event()
    pool = ThreadPoolExecutor(1)
    try:
        pool.submit(hold.wait, 30)
        queued: Future[int] = pool.submit(int)
        assert pending_and_workers(pool)[0] is True
        assert not queued.done()
    finally:
        hold.set()
        pool.shutdown()


def test_shutdown_without_wait_never_asks_a_subclass_getattr() -> None:
    """Regression: reading the pool's internals asked the subclass's ``__getattr__``
    for names the stock classes never read (``_pending_work_items``); one that
    raises KeyError then made ``shutdown(wait=False)`` raise, and the pool was
    never shut down."""

    class ConfiguredPool(ThreadPoolExecutor):
        def __init__(self, settings: dict[str, int]) -> None:
            self.settings = settings
            super().__init__(max_workers=settings["workers"])

        def __getattr__(self, name: str) -> int:  # pool.workers, pool.timeout, ...
            return self.settings[name]

    hold = threading.Event()
    with executor_guard.guarded(mode="log", threshold=10**9) as guard:
        pool = ConfiguredPool({"workers": 1})
        pool.submit(hold.wait, 30)
        try:
            pool.shutdown(wait=False)
            assert pool._shutdown
        finally:
            hold.set()
            pool.shutdown()
    (site,) = guard.report().to_dict()["sites"]
    assert site["shutdown"]["nowait"] == 1
    assert site["nowait_pending"] == 1


def test_an_idle_pool_has_nothing_pending() -> None:
    pool = ThreadPoolExecutor(2)
    try:
        pool.submit(int).result()
        # Give the worker time to count itself idle: this is not the race under test.
        for _ in range(1000):
            if pool._idle_semaphore._value >= len(pool._threads):  # type: ignore[attr-defined]
                break
            threading.Event().wait(0.001)
        assert pending_and_workers(pool)[0] is False
    finally:
        pool.shutdown()


PROGRAMS = {
    # Every result collected before shutdown(wait=False): nothing pending, ever.
    "collected": (
        """
        from concurrent.futures import ThreadPoolExecutor
        for _ in range(40):
            pool = ThreadPoolExecutor(2)
            futures = [pool.submit(sum, range(50)) for _ in range(4)]
            [f.result() for f in futures]
            pool.shutdown(wait=False)
        """,
        0,
    ),
    # Work that waits on the caller: pending at every shutdown, every run.
    "blocked": (
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        gates = []
        for _ in range(15):
            gate = threading.Event()
            gates.append(gate)
            pool = ThreadPoolExecutor(1)
            pool.submit(gate.wait, 30)
            pool.shutdown(wait=False)
        for gate in gates:
            gate.set()
        """,
        3,
    ),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_fail_on_any_gives_the_same_status_on_every_run(name: str, tmp_path: Path) -> None:
    source, expected = PROGRAMS[name]
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    statuses = []
    for _ in range(8):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "executor_guard",
                "-q",
                "--threshold",
                "1000",
                "--fail-on",
                "any",
                str(script),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        statuses.append(result.returncode)
    assert statuses == [expected] * 8, statuses


def _one_pool(work: object) -> None:
    pool = ThreadPoolExecutor(1)
    future = pool.submit(work)  # type: ignore[arg-type]
    if work is int:
        future.result()
    pool.shutdown(wait=False)


def test_the_report_counts_only_work_left_running_by_wait_false() -> None:
    hold = threading.Event()
    with executor_guard.guarded(threshold=100) as guard:
        for _ in range(3):
            _one_pool(int)
        _one_pool(lambda: hold.wait(30))
    hold.set()
    [site] = guard.report(process_figures=False).sites
    assert site["shutdown"]["nowait"] == 4
    assert site["nowait_pending"] == 1
