"""The host never pays: exact counts under contention, no deadlock, nothing kept alive."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import tracemalloc
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import executor_guard
from executor_guard import _patch, _registry

from ..helpers import Harness

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")

_OURS = [tracemalloc.Filter(True, "*executor_guard*", all_frames=True)]


def top(snapshot: tracemalloc.Snapshot) -> str:
    """Where the guard's remaining allocations come from, for a failure message."""
    stats = snapshot.filter_traces(_OURS).statistics("traceback")[:3]
    return "\n".join(f"{s.size} B: " + " <- ".join(map(str, s.traceback)) for s in stats)


def guard_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still allocated from a traceback that passes through executor_guard.

    Other threads (left over by earlier tests, pytest's own) allocate while we
    measure; only what our code allocated is ours to bound.
    """
    return sum(stat.size for stat in snapshot.filter_traces(_OURS).statistics("filename"))


def site_a() -> None:
    ThreadPoolExecutor(1).shutdown()


def site_b() -> None:
    with ThreadPoolExecutor(1):
        pass


def site_c() -> None:
    ThreadPoolExecutor(1).shutdown(wait=False)


def site_d() -> None:
    ThreadPoolExecutor(1).shutdown(wait=True, cancel_futures=True)


SITES = (site_a, site_b, site_c, site_d)


def test_eight_threads_four_sites_twenty_thousand_creations_while_reporting() -> None:
    per_thread = 2500
    errors: list[BaseException] = []
    reports = 0
    done = threading.Event()
    barrier = threading.Barrier(9)

    def creator(index: int) -> None:
        try:
            barrier.wait()
            make = SITES[index % 4]
            for _ in range(per_thread):
                make()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reporter(guard: executor_guard.Guard) -> None:
        nonlocal reports
        barrier.wait()
        while not done.is_set():
            guard.report().to_dict()
            reports += 1

    with executor_guard.guarded(threshold=100) as guard:
        creators = [threading.Thread(target=creator, args=(i,)) for i in range(8)]
        watcher = threading.Thread(target=reporter, args=(guard,))
        for thread in [*creators, watcher]:
            thread.start()
        for thread in creators:
            thread.join(timeout=120)
            assert not thread.is_alive(), "deadlock: a creator never finished"
        done.set()
        watcher.join(timeout=60)
        assert not watcher.is_alive(), "deadlock: the reporter never finished"
    assert errors == []
    assert reports > 0
    data = guard.report().to_dict()
    assert data["totals"]["pools"] == 20_000
    by_function = {site["function"]: site for site in data["sites"]}
    assert {name: s["created"] for name, s in by_function.items()} == {
        "site_a": 5000,
        "site_b": 5000,
        "site_c": 5000,
        "site_d": 5000,
    }
    assert by_function["site_a"]["shutdown"]["wait"] == 5000
    assert by_function["site_b"]["shutdown"]["context"] == 5000
    assert by_function["site_c"]["shutdown"]["nowait"] == 5000
    assert by_function["site_d"]["cancel_futures"] == 5000
    assert all(s["shutdown"]["open"] == 0 for s in data["sites"])


def test_a_dropped_pool_is_collected_and_its_threads_end_as_without_the_guard() -> None:
    def run() -> tuple[bool, int]:
        release = threading.Event()
        pool = ThreadPoolExecutor(2)
        futures = [pool.submit(release.wait) for _ in range(2)]
        workers = list(pool._threads)
        pool.shutdown(wait=False)
        ref = weakref.ref(pool)
        del pool
        release.set()
        for future in futures:
            future.result(timeout=10)
        for worker in workers:
            worker.join(timeout=10)
        gc.collect()
        return ref() is None, sum(w.is_alive() for w in workers)

    unguarded = run()
    with executor_guard.guarded():
        guarded = run()
    assert guarded == unguarded == (True, 0)


def test_install_and_uninstall_a_thousand_times_leaves_nothing_behind() -> None:
    import concurrent.futures.thread as thread_module

    original = vars(thread_module.ThreadPoolExecutor)["__init__"]
    meta_path = list(sys.meta_path)
    filters = len(warnings.filters)
    executor_guard.install()
    executor_guard.uninstall()
    gc.collect()
    tracemalloc.start(4)
    try:
        before = guard_bytes(tracemalloc.take_snapshot())
        for _ in range(1000):
            executor_guard.install(mode="warn")
            site_a()
            executor_guard.uninstall()
            executor_guard.reset()
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        after = guard_bytes(snapshot)
    finally:
        tracemalloc.stop()
    assert vars(thread_module.ThreadPoolExecutor)["__init__"] is original
    assert sys.meta_path == meta_path
    assert len(warnings.filters) == filters
    assert _patch.PATCHES.patched == []
    _registry.drain()  # the last ends and collections queued, not yet applied
    assert _registry.live_records() == 0
    assert after - before < 64 * 1024, f"grew by {after - before} bytes\n{top(snapshot)}"


def test_uninstall_while_pools_are_live_then_shutting_them_down_is_fine() -> None:
    executor_guard.install()
    pools = [ThreadPoolExecutor(1) for _ in range(3)]
    for pool in pools:
        pool.submit(int)
    executor_guard.uninstall()
    for pool in pools:
        pool.shutdown(wait=True)
    del pools
    gc.collect()
    data = executor_guard.report().to_dict()
    assert data["sites"][0]["shutdown"]["open"] == 3
    assert data["sites"][0]["shutdown"]["never"] == 0


def test_memory_stays_bounded_over_a_million_creations_at_one_site() -> None:
    """The registry's per-site state does not grow with the number of creations."""

    class Pool:
        pass

    harness = Harness(executor_guard._config.Config(threshold=10**9))

    def create(n: int) -> None:
        for _ in range(n):
            pool = Pool()
            harness.create(pool)
            harness.close(pool, "wait")

    # One frame per trace keeps tracemalloc cheap; the guard's allocations are
    # made in its own frames, which the filter matches.
    tracemalloc.start(1)
    try:
        create(10_000)
        gc.collect()
        before = guard_bytes(tracemalloc.take_snapshot())
        create(990_000)
        gc.collect()
        snapshot = tracemalloc.take_snapshot()
        after = guard_bytes(snapshot)
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, f"grew by {after - before} bytes\n{top(snapshot)}"
    assert harness.site()["created"] == 1_000_000


def test_a_hundred_thousand_distinct_sites_stay_within_the_cap() -> None:
    class Pool:
        pass

    harness = Harness(executor_guard._config.Config())
    for index in range(100_000):
        pool = Pool()
        harness.create(pool, (f"/generated/module_{index}.py", 1, "f"))
        harness.close(pool, "wait")
    snapshot = harness.registry.snapshot()
    assert len(harness.registry.sites) == _registry.MAX_SITES
    assert snapshot.overflow == 100_000 - _registry.MAX_SITES
    assert snapshot.pools == _registry.MAX_SITES


def test_distinct_sites_are_capped_and_the_overflow_is_visible_in_the_report() -> None:
    count = _registry.MAX_SITES + 1000
    source = "\n".join(f"def f{i}():\n    ThreadPoolExecutor(1).shutdown()\n" for i in range(count))
    namespace: dict[str, object] = {"ThreadPoolExecutor": ThreadPoolExecutor}
    exec(compile(source, "<generated>", "exec"), namespace)
    with executor_guard.guarded() as guard:
        for i in range(count):
            namespace[f"f{i}"]()  # type: ignore[operator]
    data = guard.report().to_dict()
    assert data["totals"]["sites"] == _registry.MAX_SITES
    assert data["totals"]["overflow_creations"] == 1000
    assert data["config"]["max_sites"] == _registry.MAX_SITES
    assert "1000 creations at call sites beyond the limit of 4096 sites" in guard.report().to_text()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_sysconfig_is_busy_can_still_create_pools() -> None:
    """Regression: the classifier once computed its paths via sysconfig, lazily,
    so a child forked while another thread held sysconfig's lock (3.12+) hung
    at its first pool. Paths are now computed at install, without sysconfig."""
    import os
    import signal
    import sysconfig
    import time

    executor_guard.install(mode="log", threshold=10**9)
    lock = getattr(sysconfig, "_CONFIG_VARS_LOCK", None)
    if lock is None:
        pytest.skip("this Python's sysconfig has no module lock")
    held, release = threading.Event(), threading.Event()

    def inside_sysconfig() -> None:  # another thread "is inside sysconfig" at the fork
        with lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=inside_sysconfig)
    holder.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                with ThreadPoolExecutor(1) as pool:
                    pool.submit(int).result()
                code = 0 if executor_guard.report().to_dict()["totals"]["pools"] == 1 else 2
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join()
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung at its first pool")
    assert status is not None and os.WEXITSTATUS(status) == 0


def _run_forking_script(tmp_path: Path, text: str) -> str:
    """Run ``text``, which forks and prints its child's exit status; assert 0; return stderr."""
    script = tmp_path / "forking.py"
    script.write_text(text)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "child 0" in done.stdout, done.stderr[-2000:]
    return done.stderr


_FORK_DURING_REPORT_IMPORT = """
import os, sys, threading, time, faulthandler, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
from concurrent.futures import ThreadPoolExecutor
import executor_guard
executor_guard.install(mode="log", threshold=10)

importing = threading.Event()
class SlowDisk:  # the report module's import takes a second (a slow disk, a busy machine)
    def find_spec(self, name, path=None, target=None):
        if name == "executor_guard._hints" and threading.current_thread().name == "worker":
            importing.set()
            time.sleep(1.0)
        return None
sys.meta_path.insert(0, SlowDisk())

def worker():
    for _ in range(10):
        ThreadPoolExecutor(1).shutdown()  # the 10th crosses the threshold: report-time imports
thread = threading.Thread(target=worker, name="worker")
thread.start()
importing.wait(10)
pid = os.fork()  # while the worker thread is inside that import
if pid == 0:
    faulthandler.dump_traceback_later(20, exit=True)  # a hung child exits 1
    for _ in range(10):
        ThreadPoolExecutor(1).shutdown()  # the child's own crossing imports the same modules
    executor_guard.report()
    os._exit(0)
thread.join()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_child_forked_during_a_report_time_import_can_still_report(tmp_path: Path) -> None:
    """Regression: a fork landing while another thread imported a report module
    (the first threshold crossing imports them) left that module's import lock
    held in the child, whose own first crossing then waited for ever. A fork now
    waits for such an import to finish (at most a few seconds)."""
    _run_forking_script(tmp_path, _FORK_DURING_REPORT_IMPORT)


def test_a_pool_class_made_at_run_time_is_not_kept_alive() -> None:
    """Neither the call-site cache nor the records hold the program's classes."""

    def build(with_init: bool) -> weakref.ref[type]:
        body: dict[str, object] = {}
        if with_init:

            def __init__(self: ThreadPoolExecutor) -> None:
                ThreadPoolExecutor.__init__(self, 1)

            body["__init__"] = __init__
        cls = type("Made", (ThreadPoolExecutor,), body)
        for _ in range(3):
            pool = cls() if with_init else cls(1)
            pool.shutdown()
        return weakref.ref(cls)

    with executor_guard.guarded(threshold=10**6) as guard:
        refs = [build(False), build(True)]
        gc.collect()
        assert [ref() for ref in refs] == [None, None]
    assert guard.report().to_dict()["totals"]["pools"] == 6


def test_peak_live_counts_only_pools_alive_together() -> None:
    """Pools dropped without shutdown, or drained after wait=False, are not live any more."""
    import time

    fillers: list[object] = []
    with executor_guard.guarded(threshold=10**9) as guard:

        def dropped() -> None:
            for _ in range(300):
                pool = ThreadPoolExecutor(1)
                del pool
                fillers.append({})  # the next pool lands at another address

        def drained() -> None:
            for _ in range(40):
                pool = ThreadPoolExecutor(1)
                pool.submit(time.sleep, 0.001)
                pool.shutdown(wait=False)
                pool._threads.copy().pop().join()  # its work is done before the next
                del pool
                fillers.append({})

        dropped()
        drained()
    sites = {s["function"].rpartition(".")[2]: s for s in guard.report().to_dict()["sites"]}
    assert (sites["dropped"]["peak_live"], sites["dropped"]["live"]) == (1, 0)
    assert sites["dropped"]["shutdown"]["never"] == 300
    assert (sites["drained"]["peak_live"], sites["drained"]["live"]) == (1, 0)


def test_live_pools_stay_live_when_a_drained_pool_address_is_reused() -> None:
    import time

    kept = []
    with executor_guard.guarded(threshold=10**9) as guard:
        for _ in range(40):
            pool = ThreadPoolExecutor(1)
            pool.submit(time.sleep, 0.001)
            pool.shutdown(wait=False)
            time.sleep(0.005)
            del pool
            kept.append(ThreadPoolExecutor(1))  # often at the address just freed
        live = sum(site["live"] for site in guard.report().to_dict()["sites"])
    assert live == 40
    for pool in kept:
        pool.shutdown()


def test_new_ignore_patterns_reach_sites_already_seen() -> None:
    def churn() -> None:
        ThreadPoolExecutor(1).shutdown()

    executor_guard.install(mode="raise", threshold=3)
    churn()
    executor_guard.install(ignore=[f"*{os.path.basename(__file__)}"])
    for _ in range(5):
        churn()  # no ExecutorChurnError: the site is ignored now
    assert executor_guard.report().to_dict()["sites"][0]["ignored"] is True


def test_a_pool_left_open_at_uninstall_is_not_live_once_collected() -> None:
    guard = executor_guard.install()
    pool = ThreadPoolExecutor(1)
    executor_guard.uninstall()
    pool.shutdown()
    del pool
    gc.collect()
    site = guard.report().to_dict()["sites"][0]
    assert (site["created"], site["live"], site["shutdown"]["open"]) == (1, 0, 1)


_FORK_DURING_HOST_LOG_LINE = """
import os, sys, threading, time, faulthandler, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
import structlog
from concurrent.futures import ThreadPoolExecutor
import executor_guard

class SlowStderr:  # the host's log line takes a second to write (a full pipe)
    def __init__(self, real):
        self.real = real
    def write(self, text):
        if threading.current_thread().name == "host-logger":
            writing.set()
            time.sleep(1.0)
        return self.real.write(text)
    def flush(self):
        self.real.flush()

writing = threading.Event()
sys.stderr = SlowStderr(sys.stderr)
executor_guard.install(mode="log", threshold=10)
host_log = structlog.WriteLogger(sys.stderr)  # the host logs to stderr too
thread = threading.Thread(target=host_log.msg, args=("host line",), name="host-logger")
thread.start()
writing.wait(10)
pid = os.fork()  # while the host's thread holds structlog's lock for stderr
if pid == 0:
    faulthandler.dump_traceback_later(20, exit=True, file=sys.__stderr__)  # hung: exit 1
    for _ in range(10):
        ThreadPoolExecutor(1).shutdown()  # the 10th crosses the threshold: a log line
    os._exit(0)
thread.join()
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_child_forked_while_another_thread_writes_a_structlog_line_can_still_log(
    tmp_path: Path,
) -> None:
    """Regression: the guard wrote through structlog's WriteLogger, whose lock for
    stderr is shared with every other WriteLogger of it (the host's, or the guard's
    own line in another thread). A fork while one held it left it held in the
    child, whose first line then waited for ever."""
    stderr = _run_forking_script(tmp_path, _FORK_DURING_HOST_LOG_LINE)
    assert "executor_churn" in stderr, stderr[-2000:]
