"""Proven on real software: APScheduler, asyncio, tqdm, Flask under gunicorn.

The guard must name the line that creates pools repeatedly in each, with the
library's own frames on the way, and stay quiet on the healthy version.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import executor_guard

from ..helpers import line_of, wait_for_file

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")

JOBS = 15


def notify(job_id: str) -> None:
    time.sleep(0.01)


def job_event_listener(event: object) -> None:
    pool = ThreadPoolExecutor(max_workers=1)  # the incident, in APScheduler
    pool.submit(notify, getattr(event, "job_id", "?"))
    pool.shutdown(wait=False)


SHARED = ThreadPoolExecutor(max_workers=2, thread_name_prefix="notify")


def fixed_listener(event: object) -> None:
    SHARED.submit(notify, getattr(event, "job_id", "?"))


def job() -> None:
    pass


def run_background_scheduler(listener: object) -> None:
    from apscheduler.events import EVENT_JOB_EXECUTED
    from apscheduler.schedulers.background import BackgroundScheduler

    executed = threading.Semaphore(0)

    def count(event: object) -> None:
        executed.release()

    scheduler = BackgroundScheduler()
    scheduler.add_listener(listener, EVENT_JOB_EXECUTED)
    scheduler.add_listener(count, EVENT_JOB_EXECUTED)
    scheduler.start()
    try:
        for index in range(JOBS):
            scheduler.add_job(job, id=f"sync-{index}")
        for _ in range(JOBS):
            assert executed.acquire(timeout=30)
    finally:
        scheduler.shutdown(wait=True)


def run_asyncio_scheduler(listener: object) -> None:
    from apscheduler.events import EVENT_JOB_EXECUTED
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def main() -> None:
        done = asyncio.Event()
        seen = 0

        def count(event: object) -> None:
            nonlocal seen
            seen += 1
            if seen == JOBS:
                done.set()

        scheduler = AsyncIOScheduler()
        scheduler.add_listener(listener, EVENT_JOB_EXECUTED)
        scheduler.add_listener(count, EVENT_JOB_EXECUTED)
        scheduler.start()
        for index in range(JOBS):
            scheduler.add_job(job, id=f"sync-{index}")
        await asyncio.wait_for(done.wait(), 30)
        scheduler.shutdown(wait=False)

    asyncio.run(main())


@pytest.mark.parametrize("run", [run_background_scheduler, run_asyncio_scheduler])
def test_apscheduler_listener_churn_is_named_with_the_dispatch_in_its_stack(run: object) -> None:
    pytest.importorskip("apscheduler")
    with executor_guard.guarded() as guard:
        run(job_event_listener)  # type: ignore[operator]
    report = guard.report()
    site = report.site(__file__, line_of(job_event_listener, "the incident, in APScheduler"))
    assert site is not None, report.to_text()
    assert site["function"] == "job_event_listener"
    assert site["created"] == JOBS
    assert site["shutdown"]["nowait"] == JOBS
    assert "churn" in site["findings"]
    frames = site["stacks"][0]["frames"]
    assert frames[-1]["function"] == "job_event_listener"
    assert any(
        "apscheduler" in f["file"] and f["function"].endswith("_dispatch_event") for f in frames
    ), [f"{f['file']}:{f['function']}" for f in frames]
    assert "apscheduler" in report.to_text()


@pytest.mark.parametrize("run", [run_background_scheduler, run_asyncio_scheduler])
def test_apscheduler_with_one_shared_pool_is_quiet(run: object) -> None:
    pytest.importorskip("apscheduler")
    with executor_guard.guarded() as guard:
        run(fixed_listener)  # type: ignore[operator]
    data = guard.report().to_dict()
    assert data["totals"]["sites_with_findings"] == 0
    assert not any(s["function"] == "fixed_listener" for s in data["sites"])


async def offload_with_a_fresh_executor(x: int) -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(ThreadPoolExecutor(1), abs, x)  # fresh, dropped


def test_asyncio_fresh_executor_per_call_is_churn_and_never_shut_down() -> None:
    async def main() -> list[int]:
        return [await offload_with_a_fresh_executor(-i) for i in range(12)]

    with executor_guard.guarded() as guard:
        assert asyncio.run(main()) == list(range(12))
        gc.collect()
    site = guard.report().site(__file__, line_of(offload_with_a_fresh_executor, "fresh, dropped"))
    assert site is not None
    assert site["created"] == 12
    assert site["shutdown"]["never"] + site["shutdown"]["open"] == 12
    assert site["shutdown"]["never"] >= 1
    assert site["findings"][:1] == ["churn"] and "never_shutdown" in site["findings"]


async def uses_the_default_executor() -> int:
    return await asyncio.get_running_loop().run_in_executor(None, abs, -5)  # app line


def test_asyncio_run_in_a_loop_is_attributed_to_the_application_line() -> None:
    with executor_guard.guarded() as guard:
        for _ in range(11):
            assert asyncio.run(uses_the_default_executor()) == 5
    report = guard.report()
    site = report.site(__file__, line_of(uses_the_default_executor, "app line"))
    assert site is not None, report.to_text()
    assert site["created"] == 11
    assert site["creator"]["file"].endswith(os.path.join("asyncio", "base_events.py"))
    assert site["shutdown"]["wait"] == 11  # asyncio.run shuts its default executor down
    assert site["findings"] == ["churn"]


def process_batches(batches: list[list[int]]) -> list[list[int]]:
    from tqdm.contrib.concurrent import thread_map

    return [thread_map(abs, batch, max_workers=2, disable=True) for batch in batches]  # tqdm line


def test_tqdm_thread_map_in_a_loop_is_grouped_by_the_calling_line() -> None:
    pytest.importorskip("tqdm")
    with executor_guard.guarded() as guard:
        out = process_batches([[-1, -2]] * 12)
    assert out == [[1, 2]] * 12
    report = guard.report()
    site = report.site(__file__, line_of(process_batches, "tqdm line"))
    assert site is not None, report.to_text()
    assert site["created"] == 12
    assert site["shutdown"]["context"] == 12
    assert os.path.join("tqdm", "contrib", "concurrent.py") in site["creator"]["file"]
    for stack in site["stacks"]:
        assert any("tqdm" in f["file"] for f in stack["frames"])
        assert stack["frames"][-1]["file"] == site["creator"]["file"]


# -- Flask under gunicorn -----------------------------------------------------------

FLASK_APP = """
    from concurrent.futures import ThreadPoolExecutor
    from flask import Flask

    app = Flask(__name__)
    SHARED = ThreadPoolExecutor(max_workers=4)

    def render(n):
        return str(sum(range(n)))

    @app.route("/churn/<int:n>")
    def churn(n):
        pool = ThreadPoolExecutor(max_workers=2)  # a pool per request
        try:
            return pool.submit(render, n).result()
        finally:
            pool.shutdown(wait=False)

    @app.route("/healthy/<int:n>")
    def healthy(n):
        return SHARED.submit(render, n).result()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def serve(
    tmp_path: Path, route: str, requests: int
) -> tuple[str, list[dict[str, object]], list[Path]]:
    pytest.importorskip("gunicorn")
    pytest.importorskip("flask")
    (tmp_path / "webapp.py").write_text(textwrap.dedent(FLASK_APP))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    env.update(
        {
            "EXECUTOR_GUARD": "log",
            "EXECUTOR_GUARD_LOG_FORMAT": "json",
            "EXECUTOR_GUARD_REPORT": str(tmp_path / "worker-{pid}.json"),
            "EXECUTOR_GUARD_DUMP_SIGNAL": "USR1",
            "EXECUTOR_GUARD_THRESHOLD": "5",
        }
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--chdir",
            str(tmp_path),
            "--graceful-timeout",
            "5",
            "webapp:app",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/healthy/1", time.monotonic() + 60)
        for n in range(requests):
            with urllib.request.urlopen(f"{base}/{route}/{n}", timeout=10) as response:
                assert response.read().decode() == str(sum(range(n)))
        workers = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert workers, "no gunicorn workers found"
        os.kill(workers[0], signal.SIGUSR1)  # a dump while it serves
        dump = tmp_path / f"worker-{workers[0]}.json"
        wait_for_file(dump)
        assert dump.exists(), "no signal-triggered dump"
        with urllib.request.urlopen(f"{base}/{route}/3", timeout=10) as response:  # still serving
            assert response.read() == b"3"
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return err, events, sorted(tmp_path.glob("worker-*.json"))


def test_flask_under_gunicorn_per_request_pools_are_found_per_worker_and_merged(
    tmp_path: Path,
) -> None:
    err, events, reports = serve(tmp_path, "churn", 30)
    assert events, err
    assert all(e["event"] == "executor_churn" and e["function"] == "churn" for e in events)
    assert {e["pid"] for e in events} <= {
        json.loads(p.read_text())["process"]["pid"] for p in reports
    }
    merged = subprocess.run(
        [sys.executable, "-m", "executor_guard", "report", "--format", "json", *map(str, reports)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert merged.returncode == 0, merged.stderr
    data = json.loads(merged.stdout)
    site = next(s for s in data["sites"] if s["function"] == "churn")
    assert site["created"] == 31  # 30 requests and one after the dump
    assert site["file"].endswith("webapp.py")
    assert site["shutdown"]["nowait"] == 31
    assert "churn" in site["findings"]
    text = subprocess.run(
        [sys.executable, "-m", "executor_guard", "report", *map(str, reports)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "webapp.py:13 in churn" in text


def test_flask_under_gunicorn_with_one_shared_pool_says_nothing(tmp_path: Path) -> None:
    err, events, reports = serve(tmp_path, "healthy", 30)
    assert events == [], err
    assert reports
    for path in reports:
        assert json.loads(path.read_text())["totals"]["sites_with_findings"] == 0
