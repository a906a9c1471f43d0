"""Production activation: EXECUTOR_GUARD at interpreter start, in a venv with the wheel.

Every test runs real interpreters of a fresh virtual environment into which the
built wheel (not the source tree) was installed, as an operator would have it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..helpers import wait_for_file
from .conftest import WheelEnv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

CHURN = textwrap.dedent(
    """
    import sys
    from concurrent.futures import ThreadPoolExecutor

    def handle(request):
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(sum, [request])
        pool.shutdown(wait=False)

    for request in range(25):
        handle(request)
    print("served")
    """
)


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def test_the_wheel_ships_the_start_up_hook(wheel_env: WheelEnv) -> None:
    pth = Path(wheel_env.site_packages()) / "executor_guard.pth"
    assert pth.is_file()
    text = pth.read_text()
    # One line, and site executes only the lines that start with "import".
    assert text.startswith("import os;")
    assert text.count("\n") == 1


@pytest.mark.parametrize("value", [None, "", "0", " 0 ", "false", "Off", "no"])
def test_off_by_default_imports_nothing(
    wheel_env: WheelEnv, tmp_path: Path, value: str | None
) -> None:
    write(
        tmp_path,
        "app.py",
        CHURN + "\nprint(sorted(m for m in sys.modules if 'executor_guard' in m))\n",
    )
    env = {} if value is None else {"EXECUTOR_GUARD": value}
    result = wheel_env.run(["app.py"], tmp_path, env)
    assert result.returncode == 0
    assert result.stdout == "served\n[]\n"
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ("1", "log"),
        ("on", "log"),
        ("True", "log"),
        ("log", "log"),
        ("LOG", "log"),
        ("warn", "warn"),
        ("raise", "raise"),
    ],
)
def test_each_value_activates_its_mode(
    wheel_env: WheelEnv, tmp_path: Path, value: str, mode: str
) -> None:
    write(tmp_path, "app.py", CHURN)
    result = wheel_env.run(["app.py"], tmp_path, {"EXECUTOR_GUARD": value})
    if mode == "log":
        assert result.returncode == 0
        assert result.stdout == "served\n"
        assert result.stderr.count("executor_churn") == 2  # milestones 10 and 20
    elif mode == "warn":
        assert result.returncode == 0
        assert (
            "app.py:6: ExecutorChurnWarning: ThreadPoolExecutor created 10 times" in result.stderr
        )
    else:
        assert result.returncode == 1
        assert result.stdout == ""
        assert (
            "executor_guard.exceptions.ExecutorChurnError: refused to create another"
            in result.stderr
        )
        assert 'app.py", line 6, in handle' in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXECUTOR_GUARD", "maybe"),
        ("EXECUTOR_GUARD_SIGTERM", "maybe"),
        ("EXECUTOR_GUARD_THRESHOLD", "1"),
        ("EXECUTOR_GUARD_THRESHOLD", "ten"),
        ("EXECUTOR_GUARD_WINDOW", "-3"),
        ("EXECUTOR_GUARD_STACK_DEPTH", "100000"),
        ("EXECUTOR_GUARD_LOG_FORMAT", "yaml"),
        ("EXECUTOR_GUARD_LOG_TARGET", "syslog"),
        ("EXECUTOR_GUARD_REPORT", "/tmp/{host}.json"),
        ("EXECUTOR_GUARD_DUMP_SIGNAL", "SIGWHATEVER"),
    ],
)
def test_a_bad_value_prints_one_line_and_leaves_the_guard_off(
    wheel_env: WheelEnv, tmp_path: Path, name: str, value: str
) -> None:
    write(tmp_path, "app.py", CHURN)
    env = {"EXECUTOR_GUARD": "log", name: value}
    result = wheel_env.run(["app.py"], tmp_path, env)
    assert result.returncode == 0
    assert result.stdout == "served\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"executor_guard: {name}: invalid value {value!r} (expected")
    assert lines[0].endswith("; the guard is off")

    strict = wheel_env.run(["app.py"], tmp_path, {**env, "EXECUTOR_GUARD_STRICT": "1"})
    assert strict.returncode == 2
    assert strict.stdout == ""
    assert strict.stderr.splitlines()[0].endswith("exiting (EXECUTOR_GUARD_STRICT=1)")


def test_json_log_lines_parse_back_with_stable_keys(wheel_env: WheelEnv, tmp_path: Path) -> None:
    write(tmp_path, "app.py", CHURN)
    result = wheel_env.run(
        ["app.py"], tmp_path, {"EXECUTOR_GUARD": "1", "EXECUTOR_GUARD_LOG_FORMAT": "json"}
    )
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["created"] for e in events] == [10, 20]
    for event in events:
        assert list(event)[:4] == ["event", "timestamp", "level", "logger"]
        assert event["event"] == "executor_churn"
        assert set(event) >= {
            "pid",
            "site",
            "file",
            "line",
            "function",
            "created",
            "window",
            "rate_per_min",
            "peak_live",
            "shutdown",
            "threads",
            "stack",
            "process",
        }
        assert (event["line"], event["function"]) == (6, "handle")
        assert set(event["process"]) == {"threads", "rss_bytes", "fds"}
        assert event["stack"][-1].endswith("app.py:6 in handle")


def test_the_hook_runs_once_when_the_pth_is_processed_twice(
    wheel_env: WheelEnv, tmp_path: Path
) -> None:
    write(
        tmp_path, "app.py", f"import site\nsite.addsitedir({wheel_env.site_packages()!r})\n" + CHURN
    )
    result = wheel_env.run(
        ["app.py"], tmp_path, {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_LOG_FORMAT": "json"}
    )
    assert result.returncode == 0
    assert [json.loads(line)["created"] for line in result.stderr.splitlines()] == [10, 20]


def test_start_up_imports_neither_structlog_nor_psutil(wheel_env: WheelEnv, tmp_path: Path) -> None:
    names = ("structlog", "psutil", "multiprocessing", "json")
    code = f"import sys; print(sorted(m for m in {names!r} if m in sys.modules))"
    result = wheel_env.run(["-c", code], tmp_path, {"EXECUTOR_GUARD": "log"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_report_at_exit_and_children_inherit_the_settings(
    wheel_env: WheelEnv, tmp_path: Path
) -> None:
    write(tmp_path, "child.py", CHURN)
    write(
        tmp_path,
        "parent.py",
        """
        import subprocess, sys
        subprocess.run([sys.executable, "child.py"], check=True)
        import os
        os.execv(sys.executable, [sys.executable, "child.py"])
        """,
    )
    env = {
        "EXECUTOR_GUARD": "log",
        "EXECUTOR_GUARD_REPORT": str(tmp_path / "report-{pid}.json"),
        "EXECUTOR_GUARD_LOG_FORMAT": "json",
    }
    result = wheel_env.run(["parent.py"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    reports = [json.loads(p.read_text()) for p in tmp_path.glob("report-*.json")]
    # parent (before exec, no pools), the subprocess child, and the exec'd image
    churned = [r for r in reports if r["totals"]["pools"] == 25]
    assert len(churned) == 2
    assert len({r["process"]["pid"] for r in churned}) == 2
    assert len(result.stderr.splitlines()) == 4  # two events per guarded child


def test_a_path_without_pid_is_the_first_process_and_others_write_beside_it(
    wheel_env: WheelEnv, tmp_path: Path
) -> None:
    write(tmp_path, "child.py", CHURN)
    write(
        tmp_path,
        "parent.py",
        "import subprocess, sys\nsubprocess.run([sys.executable, 'child.py'], check=True)\n",
    )
    env = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": str(tmp_path / "report.json")}
    assert wheel_env.run(["parent.py"], tmp_path, env).returncode == 0
    names = {p.name for p in tmp_path.glob("report*.json")}
    assert "report.json" in names and len(names) == 2
    [child] = names - {"report.json"}
    assert child.startswith("report-")
    assert json.loads((tmp_path / "report.json").read_text())["totals"]["pools"] == 0
    assert json.loads((tmp_path / child).read_text())["totals"]["pools"] == 25


WORKERS = """
    import multiprocessing, os, sys
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    def churn_in_worker(n):
        for _ in range(n):
            ThreadPoolExecutor(1).shutdown()
        return os.getpid()

    if __name__ == "__main__":
        method = sys.argv[1]
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as pool:
            pids = set(pool.map(churn_in_worker, [12] * 4))
        print(len(pids) >= 1)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_spawn_and_forkserver_workers_are_guarded(
    wheel_env: WheelEnv, tmp_path: Path, method: str
) -> None:
    write(tmp_path, "app.py", WORKERS)
    env = {
        "EXECUTOR_GUARD": "log",
        "EXECUTOR_GUARD_LOG_FORMAT": "json",
        "EXECUTOR_GUARD_REPORT": str(tmp_path / "r-{pid}.json"),
    }
    result = wheel_env.run(["app.py", method], tmp_path, env)
    assert result.returncode == 0, result.stderr
    reports = [json.loads(p.read_text()) for p in tmp_path.glob("r-*.json")]
    worker_sites = [s for r in reports for s in r["sites"] if s["function"] == "churn_in_worker"]
    assert worker_sites, [r["process"]["pid"] for r in reports]
    assert sum(s["created"] for s in worker_sites) == 48
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(e["function"] == "churn_in_worker" for e in events)


def test_fork_workers_inherit_the_guard_without_installing_twice(
    wheel_env: WheelEnv, tmp_path: Path
) -> None:
    write(tmp_path, "app.py", WORKERS)
    env = {
        "EXECUTOR_GUARD": "log",
        "EXECUTOR_GUARD_LOG_FORMAT": "json",
        "EXECUTOR_GUARD_REPORT": str(tmp_path / "r-{pid}.json"),
    }
    result = wheel_env.run(["-W", "ignore::DeprecationWarning", "app.py", "fork"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    reports = [json.loads(p.read_text()) for p in tmp_path.glob("r-*.json")]
    worker_sites = [s for r in reports for s in r["sites"] if s["function"] == "churn_in_worker"]
    assert sum(s["created"] for s in worker_sites) == 48
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    # Each forked worker starts with an empty registry: its first milestone is its own 10th pool.
    assert events and all(e["function"] == "churn_in_worker" for e in events)
    assert all(e["created"] in (10, 20) for e in events)


FORKER = """
    import os, signal, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()

    def busy():
        while not stop.is_set():
            ThreadPoolExecutor(1).shutdown()

    def wait_or_kill(pid, seconds=20):
        # A hung child is killed, never left behind, and counts as a failure.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return "hung"

    threads = [threading.Thread(target=busy) for _ in range(2)]
    for t in threads:
        t.start()
    failures = []
    for _ in range(100):
        pid = os.fork()
        if pid == 0:
            import executor_guard
            with ThreadPoolExecutor(1) as pool:
                pool.submit(int).result()
            data = executor_guard.report().to_dict()
            os._exit(0 if data["totals"]["pools"] == 1 else 3)
        code = wait_or_kill(pid)
        if code != 0:
            failures.append(code)
    stop.set()
    for t in threads:
        t.join()
    print("failures", failures)
"""


@pytest.mark.skipif(sys.version_info < (3, 9), reason="os.waitstatus_to_exitcode")
def test_a_hundred_forks_while_threads_create_pools_never_hang(
    wheel_env: WheelEnv, tmp_path: Path
) -> None:
    write(tmp_path, "app.py", FORKER)
    result = wheel_env.run(
        ["-W", "ignore::DeprecationWarning", "app.py"],
        tmp_path,
        {"EXECUTOR_GUARD": "warn", "EXECUTOR_GUARD_THRESHOLD": "1000000000"},
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "failures []\n"


SERVER = """
    import os, signal, sys, time
    from concurrent.futures import ThreadPoolExecutor

    def previous(signum, frame):
        print("host handler ran", flush=True)

    signal.signal(signal.SIGUSR1, previous) if len(sys.argv) > 1 else None
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists("stop") and time.monotonic() < deadline:
        ThreadPoolExecutor(1).shutdown()
    print("stopped", flush=True)
"""


@pytest.mark.parametrize("host_handler", [False, True])
def test_a_signal_dumps_the_report_without_stopping_the_process(
    wheel_env: WheelEnv, tmp_path: Path, host_handler: bool
) -> None:
    import subprocess

    write(tmp_path, "server.py", SERVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    env.update(
        {
            "EXECUTOR_GUARD": "log",
            "EXECUTOR_GUARD_DUMP_SIGNAL": "USR1",
            "EXECUTOR_GUARD_THRESHOLD": "1000000000",
            "EXECUTOR_GUARD_REPORT": str(tmp_path / "dump-{pid}.json"),
        }
    )
    args = [wheel_env.python, "server.py"] + (["chain"] if host_handler else [])
    process = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        dump = tmp_path / f"dump-{process.pid}.json"
        for _ in range(3):  # signals land while pools are being created
            process.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
        wait_for_file(dump)
        data = json.loads(dump.read_text())
        assert data["sites"][0]["created"] > 0
        assert process.poll() is None  # still serving
    finally:
        (tmp_path / "stop").write_text("")
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.endswith("stopped\n")
    assert ("host handler ran" in out) is host_handler
    assert f"report written to {dump}" in err
