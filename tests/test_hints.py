"""Hints: each pattern of churn gets the next step its evidence calls for.

Every test runs a real program shape (asyncio.run per call, tqdm's thread_map,
a ``with`` pool per call, ...) under the guard and reads the hint where users
meet it: the JSON site, the text summary, the warning, the log event and the
raise-mode error.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import executor_guard
from executor_guard import ExecutorChurnError, ExecutorChurnWarning, Report
from executor_guard._hints import hint, library_name, library_path

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")

THRESHOLD = 5


def flagged_site(report: Report) -> dict[str, Any]:
    sites = report.flagged()
    assert len(sites) == 1, [s["file"] for s in report.sites]
    return sites[0]


def run(program: Any, times: int = 8, **options: Any) -> Report:
    with executor_guard.guarded(threshold=THRESHOLD, **options) as guard:
        for _ in range(times):
            program()
        gc.collect()
    return guard.report()


# -- the programs -------------------------------------------------------------


def nowait_per_call() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(int).result()
    pool.shutdown(wait=False)


def never_shut_down() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(int).result()


def with_per_call() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(int, range(3)))


async def _in_executor() -> None:
    await asyncio.get_running_loop().run_in_executor(None, int)


def asyncio_run_per_call() -> None:
    asyncio.run(_in_executor())


def tqdm_thread_map_per_call() -> None:
    from tqdm.contrib.concurrent import thread_map

    thread_map(int, range(3), disable=True)


def pool_per_thread() -> None:
    def worker() -> None:
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(int).result()
        pool.shutdown()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()


def process_pool_per_batch() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        list(pool.map(abs, [1, -2]))


# -- the hint per pattern -------------------------------------------------------


def test_a_nowait_pool_per_call_is_told_to_hoist_one_pool_and_shut_it_at_exit() -> None:
    site = flagged_site(run(nowait_per_call))
    assert site["hint"].startswith("a pool per call shut down with wait=False: hoist one pool")
    assert "shut it down once at exit" in site["hint"]


def test_pools_never_shut_down_are_told_they_are_left_to_the_collector() -> None:
    site = flagged_site(run(never_shut_down))
    assert "never_shutdown" in site["findings"]
    assert "never shut down and are left to the garbage collector" in site["hint"]


def test_a_with_pool_per_call_is_told_the_cost_is_start_up_not_to_use_with() -> None:
    site = flagged_site(run(with_per_call))
    assert site["shutdown"]["context"] == 8
    assert site["hint"].startswith("a `with` pool per call pays thread or process start-up")
    assert "long-lived pool" in site["hint"]


def test_asyncio_run_per_call_is_told_to_reuse_one_loop_or_pass_an_executor() -> None:
    site = flagged_site(run(asyncio_run_per_call))
    assert library_path(site["creator"]["file"]) == "asyncio/base_events.py"
    assert "asyncio.Runner" in site["hint"]
    assert "pass your own long-lived executor" in site["hint"]


def test_tqdm_thread_map_per_call_is_told_to_map_on_one_pool_of_its_own() -> None:
    site = flagged_site(run(tqdm_thread_map_per_call))
    assert library_name(site["creator"]["file"]) == "tqdm"
    assert site["hint"].startswith("tqdm's thread_map()/process_map() builds a new pool")
    assert "one ThreadPoolExecutor for the program" in site["hint"]


def test_a_pool_per_thread_is_told_to_share_one_pool_across_threads() -> None:
    site = flagged_site(run(pool_per_thread))
    assert len(site["threads"]) == 8
    assert "share one pool across threads" in site["hint"]


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
def test_a_process_pool_per_batch_is_told_to_keep_one_for_the_programs_life() -> None:
    site = flagged_site(run(process_pool_per_batch, times=THRESHOLD))
    assert "keep one ProcessPoolExecutor for the program's life" in site["hint"]


def test_a_library_client_per_call_names_the_object_to_reuse() -> None:
    site: dict[str, Any] = {
        "file": "/srv/app/upload.py",
        "line": 12,
        "creator": {
            "file": "/venv/lib/python3.12/site-packages/s3transfer/futures.py",
            "line": 401,
            "function": "BoundedExecutor.__init__",
        },
        "classes": {"ThreadPoolExecutor": 40},
        "shutdown": {"wait": 40},
        "threads": {"MainThread": 40},
    }
    text = hint(site, ["churn"])
    assert text is not None
    assert "s3transfer/futures.py:401" in text
    assert "TransferManager" in text
    site["creator"]["file"] = "/venv/lib/python3.12/site-packages/requests_futures/sessions.py"
    assert "FuturesSession" in (hint(site, ["churn"]) or "")
    site["creator"]["file"] = "/venv/lib/python3.12/site-packages/somelib/core.py"
    assert "create the somelib object that owns them" in (hint(site, ["churn"]) or "")


def test_sites_without_findings_have_no_hint_and_each_finding_alone_has_its_own() -> None:
    report = run(lambda: None)
    assert report.sites == []
    site: dict[str, Any] = {"file": "a.py", "line": 1, "shutdown": {"nowait": 1}, "threads": {}}
    assert hint(site, []) is None
    assert "wait=False while its work was still pending" in (hint(site, ["nowait_pending"]) or "")
    assert "garbage-collected without shutdown" in (hint(site, ["never_shutdown"]) or "")


# -- where the hint shows -------------------------------------------------------


def test_the_text_summary_and_a_reloaded_report_carry_the_hint(tmp_path: Path) -> None:
    report = run(with_per_call)
    site = flagged_site(report)
    assert f"    hint: {site['hint']}" in report.to_text().splitlines()
    path = report.write_json(str(tmp_path / "r.json"))
    data = json.loads(Path(path).read_text())
    assert data["sites"][0]["hint"] == site["hint"]
    del data["sites"][0]["hint"]  # a report written before hints existed
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert _load(tmp_path / "old.json").sites[0]["hint"] == site["hint"]


def _load(path: Path) -> Report:
    from executor_guard._report import load

    return load(str(path))


def test_the_warning_carries_the_sites_hint_not_one_sentence_for_all() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(with_per_call, mode="warn")
        run(nowait_per_call, mode="warn")
    texts = [str(w.message) for w in caught if issubclass(w.category, ExecutorChurnWarning)]
    assert len(texts) == 2
    assert "a `with` pool per call" in texts[0]
    assert "hoist one pool" in texts[1]
    assert not any("instead of one per call" in t for t in texts)


def test_the_log_event_carries_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    run(asyncio_run_per_call, mode="log", log_format="json")
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert events and all("asyncio.Runner" in e["hint"] for e in events)
    keys = list(events[0])
    assert keys.index("hint") == keys.index("findings") + 1


def test_raise_mode_does_not_tell_a_with_pool_to_use_with() -> None:
    with pytest.raises(ExecutorChurnError) as raised:
        run(with_per_call, mode="raise")
    text = str(raised.value)
    assert "`with` block" not in text and "use a `with`" not in text
    assert "a `with` pool per call pays thread or process start-up" in text


def test_the_launcher_prints_the_asyncio_hint_in_the_warning_and_summary(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(
        textwrap.dedent(
            """\
            import asyncio

            async def handle():
                await asyncio.get_running_loop().run_in_executor(None, int)

            for _ in range(12):
                asyncio.run(handle())
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "executor_guard",
            "--report",
            str(tmp_path / "r.json"),
            "service.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if "ExecutorChurnWarning" in line)
    assert "asyncio.Runner" in warning
    assert "    hint: asyncio.run() (or a new event loop) per call" in result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert "asyncio.Runner" in data["sites"][0]["hint"]


# -- by_creator: one library line churning for several call sites -----------------

EIGHT_LINES = textwrap.dedent(
    """\
    from tqdm.contrib.concurrent import thread_map

    def t1(): thread_map(int, [1], disable=True)
    def t2(): thread_map(int, [1], disable=True)
    def t3(): thread_map(int, [1], disable=True)
    def t4(): thread_map(int, [1], disable=True)
    def t5(): thread_map(int, [1], disable=True)
    def t6(): thread_map(int, [1], disable=True)
    def t7(): thread_map(int, [1], disable=True)
    def t8(): thread_map(int, [1], disable=True)

    for i, t in enumerate([t1, t2, t3, t4, t5, t6, t7, t8]):
        for _ in range(6 if i < 3 else 5):
            t()
    """
)


def _guard(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "executor_guard", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_43_pools_from_one_library_line_for_8_lines_under_the_threshold_is_churn(
    tmp_path: Path,
) -> None:
    (tmp_path / "suite.py").write_text(EIGHT_LINES)
    result = _guard("--fail-on", "churn", "--report", "r.json", "suite.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert all(not s["findings"] for s in data["sites"])  # each line alone is below 10
    (group,) = data["by_creator"]
    assert library_path(group["creator"]["file"]) == "tqdm/contrib/concurrent.py"
    assert group["created"] == 43 and group["findings"] == ["churn"]
    assert [(s["line"], s["created"]) for s in group["sites"]] == [
        (3, 6), (4, 6), (5, 6), (6, 5), (7, 5), (8, 5), (9, 5), (10, 5)
    ]  # fmt: skip
    assert group["hint"].startswith("tqdm's thread_map()/process_map()")
    err = result.stderr
    assert "1 library line churning across call sites" in err.splitlines()[1]
    heading = next(line for line in err.splitlines() if line.startswith("[churn] 43 pools"))
    assert heading.startswith("[churn] 43 pools built at tqdm/contrib/concurrent.py:")
    assert heading.endswith(" for 8 call sites together (threshold 10)")
    assert "    6 x suite.py:3 in t1" in err
    assert (
        err.rstrip()
        .splitlines()[-1]
        .startswith(
            "executor_guard: exit status 3: 1 library line churning across call sites "
            "(--fail-on churn): tqdm/contrib/concurrent.py:"
        )
    )
    again = _guard("report", "--fail-on", "churn", "r.json", cwd=tmp_path)
    assert again.returncode == 3
    assert "library line churning across call sites" in again.stderr


def test_a_group_under_the_threshold_is_listed_but_no_finding(tmp_path: Path) -> None:
    (tmp_path / "suite.py").write_text(EIGHT_LINES)
    result = _guard("--threshold", "50", "--fail-on", "churn", "-q", "--report", "r.json",
                    "suite.py", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (group,) = json.loads((tmp_path / "r.json").read_text())["by_creator"]
    assert group["created"] == 43 and group["findings"] == [] and group["hint"] is None


def test_library_and_stdlib_frames_read_from_their_package_root() -> None:
    from executor_guard._report import short_path

    assert library_path("/usr/lib/python3.13/asyncio/base_events.py") == "asyncio/base_events.py"
    assert short_path("/srv/venv/lib/python3.11/site-packages/flask/app.py") == "flask/app.py"
    assert library_path("/srv/app/svc/jobs.py") is None
    assert library_name("/x/lib/python3.9/site-packages/boto3/session.py") == "boto3"
