"""Faults inside the guard never reach the host; bad input gets one clear line."""

from __future__ import annotations

import errno
import importlib
import json
import linecache
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import executor_guard
from executor_guard import _report

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")

CHURN = textwrap.dedent(
    """
    from concurrent.futures import ThreadPoolExecutor
    def handle():
        ThreadPoolExecutor(1).shutdown()
    for _ in range(12):
        handle()
    print("ok")
    """
)


def launch(
    tmp_path: Path, *args: str, script: str = CHURN, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(script)
    full = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "executor_guard", *args, "app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
    )


@pytest.mark.parametrize(
    ("sabotage", "reason"),
    [
        ("import shutil; shutil.rmtree('out')", "No such file or directory"),
        ("import os; os.mkdir('out/r.json')", "Is a directory"),
    ],
)
def test_a_report_path_broken_while_running_costs_one_line_and_nothing_else(
    tmp_path: Path, sabotage: str, reason: str
) -> None:
    # Checked at start (see test_endings); here the program breaks it afterwards.
    (tmp_path / "out").mkdir()
    result = launch(tmp_path, "-q", "--report", "out/r.json", script=CHURN + sabotage + "\n")
    assert result.returncode == 0
    assert result.stdout == "ok\n"
    guard_lines = [
        line for line in result.stderr.splitlines() if line.startswith("executor_guard:")
    ]
    assert guard_lines == [
        f"executor_guard: could not write the report to '{tmp_path / 'out' / 'r.json'}': {reason}"
    ]


def test_a_full_disk_while_writing_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with executor_guard.guarded() as guard:
        ThreadPoolExecutor(1).shutdown()
    report = guard.report()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        report.write_json(str(tmp_path / "r.json"))
    assert list(tmp_path.iterdir()) == []


def test_structlog_failing_costs_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import structlog

    # Not a function of the test's own (whose exception would be the
    # program's): calling None fails inside our logging code itself.
    monkeypatch.setattr(structlog, "wrap_logger", None)
    with executor_guard.guarded(mode="log", log_format="json") as guard:
        for _ in range(25):
            ThreadPoolExecutor(1).shutdown()
    err = capsys.readouterr().err
    assert err.count("executor_guard: internal error while logging an executor_churn event") == 1
    assert "TypeError: 'NoneType' object is not callable" in err
    assert guard.report().to_dict()["sites"][0]["created"] == 25


def test_psutil_failing_gives_empty_figures(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import psutil

    def broken(*args: object, **kwargs: object) -> None:
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "Process", broken)
    with executor_guard.guarded() as guard:
        ThreadPoolExecutor(1).shutdown()
    data = guard.report().to_dict()
    assert data["process"]["rss_bytes"] is None
    assert data["process"]["fds"] is None
    assert data["process"]["threads"] >= 1
    assert "reading process figures with psutil" in capsys.readouterr().err


def test_a_frame_whose_file_vanished_and_a_failing_linecache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_file = tmp_path / "vanishing_module.py"
    module_file.write_text(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def make():\n    ThreadPoolExecutor(1).shutdown()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("vanishing_module")
    module_file.unlink()
    linecache.clearcache()
    with executor_guard.guarded(threshold=3) as guard:
        for _ in range(5):
            module.make()
    text = guard.report().to_text()
    assert "vanishing_module.py:3 in make" in text

    def broken(*args: object, **kwargs: object) -> str:
        raise MemoryError("linecache")

    monkeypatch.setattr(linecache, "getline", broken)
    assert "vanishing_module.py:3 in make" in guard.report().to_text()


def test_a_warning_filter_error_surfaces_at_the_call_site_only(tmp_path: Path) -> None:
    result = (
        subprocess.run(
            [
                sys.executable,
                "-W",
                "error::ResourceWarning",
                "-m",
                "executor_guard",
                "-q",
                "app.py",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            input=None,
            env={k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")},
        )
        if (tmp_path / "app.py").write_text(CHURN)
        else None
    )
    assert result is not None
    assert result.returncode == 1
    assert 'app.py", line 4, in handle' in result.stderr
    assert (
        result.stderr.rstrip()
        .splitlines()[-1]
        .startswith("executor_guard.exceptions.ExecutorChurnWarning:")
    )
    assert "internal error" not in result.stderr


SHUTDOWN_SCRIPT = """
    import atexit, sys
    from concurrent.futures import ThreadPoolExecutor

    def at_exit():
        for _ in range(3):
            ThreadPoolExecutor(1).shutdown()
        global late
        late = ThreadPoolExecutor(1)  # left open for interpreter teardown

    class Holder:
        def __del__(self):
            ThreadPoolExecutor(1).shutdown()

    atexit.register(at_exit)
    keep = Holder()
    module_pool = ThreadPoolExecutor(2)
    module_pool.submit(int)
    print("main done")
"""


def test_pools_in_atexit_handlers_and_module_teardown(tmp_path: Path) -> None:
    result = launch(
        tmp_path, "--report", str(tmp_path / "r.json"), script=textwrap.dedent(SHUTDOWN_SCRIPT)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "main done\n"
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["totals"]["pools"] >= 1

    env_result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")},
            "EXECUTOR_GUARD": "log",
            "EXECUTOR_GUARD_REPORT": str(tmp_path / "env.json"),
        },
    )
    assert env_result.returncode == 0, env_result.stderr
    assert "Traceback" not in env_result.stderr
    data = json.loads((tmp_path / "env.json").read_text())
    # The at-exit report runs after the program's own atexit handlers.
    assert data["totals"]["pools"] >= 5


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        '{"schema": 1',
        "null",
        '"text"',
        "[]",
        '{"schema": 1, "tool": {"name": "executor_guard"}, '
        '"process": {}, "config": {}, "totals": {}, "sites": [{"file": 3}]}',
        '{"schema": 7, "tool": {"name": "executor_guard"}}',
        '{"schema": "1", "tool": {"name": "executor_guard"}}',
    ],
)
def test_report_command_rejects_bad_files_with_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "executor_guard", "report", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"executor-guard report: error: {path}: ")
    with pytest.raises(_report.ReportFileError):
        _report.load(str(path))
