"""Deployments as they run: process trees, SIGTERM, ``os._exit``, report paths, error paths.

Each test runs the launcher (or an environment activation) in real
subprocesses with real signals, and compares with plain ``python`` where the
launcher promises to behave like it.
"""

from __future__ import annotations

import json
import os
import py_compile
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ..helpers import sigterm_on_import
from .test_launcher import TIMEOUT, guarded, plain, run, write

CHURN_LINE = 5
CHILD = """
    import time
    from concurrent.futures import ThreadPoolExecutor
    def handle(request):
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(time.sleep, 0.01)
        pool.shutdown(wait=False)
    for request in range(12):
        handle(request)
"""

PARENT = """
    import subprocess, sys
    subprocess.run([sys.executable, "child.py"], check=True)
    print("parent done")
"""


def read(path: Path) -> dict:  # type: ignore[type-arg]
    data: dict = json.loads(path.read_text())  # type: ignore[type-arg]
    return data


# -- one verdict for a process tree ------------------------------------------------


def test_a_parent_that_only_starts_a_churning_child_gets_the_childs_verdict(
    tmp_path: Path,
) -> None:
    write(tmp_path / "child.py", CHILD)
    write(tmp_path / "parent.py", PARENT)
    result = guarded("--fail-on", "churn", "--report", "tree.json", "parent.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "parent done" in result.stdout
    assert "12 pools from 1 call site" in result.stderr
    assert "merged from 2 processes" in result.stderr
    assert "exit status 3: 1 call site with churn (--fail-on churn)" in result.stderr
    data = read(tmp_path / "tree.json")
    [site] = data["sites"]
    assert (site["file"], site["line"], site["created"]) == (
        str(tmp_path / "child.py"),
        CHURN_LINE,
        12,
    )
    assert len(data["processes"]) == 2
    # The child wrote nothing beside the tree's report, and the spool is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["child.py", "parent.py", "tree.json"]
    assert os.environ.get("EXECUTOR_GUARD_SPOOL") is None


def test_without_a_report_path_the_summary_still_covers_the_tree(tmp_path: Path) -> None:
    write(tmp_path / "child.py", CHILD)
    write(tmp_path / "parent.py", PARENT)
    result = guarded("--fail-on", "churn", "parent.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "[churn, nowait_pending] child.py:5 in handle" in result.stderr


def test_creations_across_processes_add_up_to_churn(tmp_path: Path) -> None:
    # Each child builds 6 pools, under the threshold; the tree built 12 at one line.
    write(tmp_path / "child.py", CHILD.replace("range(12)", "range(6)"))
    write(
        tmp_path / "parent.py",
        """
        import subprocess, sys
        for _ in range(2):
            subprocess.run([sys.executable, "child.py"], check=True)
        """,
    )
    result = guarded("--fail-on", "churn", "parent.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "12 pools from 1 call site" in result.stderr


WORKERS = """
    import multiprocessing, sys, time
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    def work(n):
        for _ in range(6):
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(time.sleep, 0)
        return n

    def idle(n):
        return n

    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        for batch in range(3):
            with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
                print(sorted(pool.map(work, range(2))))
        with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
            print(sorted(pool.map(idle, range(4))))
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_pool_workers_count_for_the_tree_and_leave_no_files(tmp_path: Path, method: str) -> None:
    write(tmp_path / "app.py", WORKERS)
    (tmp_path / "out").mkdir()
    result = guarded(
        "-q",
        "--fail-on",
        "churn",
        "--report",
        "out/r.json",
        "app.py",
        method,
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.json"]
    data = read(tmp_path / "out" / "r.json")
    work = next(s for s in data["sites"] if s["function"] == "work")
    assert work["created"] == 36
    assert "churn" in work["findings"]


def test_per_process_files_only_where_asked_and_none_for_idle_workers(tmp_path: Path) -> None:
    write(tmp_path / "app.py", WORKERS.replace("for batch in range(3)", "for batch in range(0)"))
    (tmp_path / "out").mkdir()
    result = guarded("-q", "--report", "out/r-{pid}.json", "app.py", "spawn", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Only the launcher's own process: its idle workers built no pool.
    [only] = list((tmp_path / "out").iterdir())
    assert read(only)["process"]["pid"] != 0
    assert read(only)["totals"]["pools"] == 1


def test_pytest_under_the_launcher_is_one_verdict_with_xdist_style_children(
    tmp_path: Path,
) -> None:
    # Subprocesses started inside a test count too.
    write(tmp_path / "child.py", CHILD)
    write(
        tmp_path / "test_tree.py",
        """
        import subprocess, sys
        def test_runs_a_child():
            subprocess.run([sys.executable, "child.py"], check=True)
        """,
    )
    result = guarded(
        "--fail-on",
        "churn",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "child.py:5 in handle" in result.stderr


# -- every way a process ends ----------------------------------------------------------

TERM = """
    import signal, sys, time
    from concurrent.futures import ThreadPoolExecutor
    if sys.argv[1:] == ["handler"]:
        def on_term(signum, frame):
            print("host handler ran", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
    if sys.argv[1:] == ["ignore"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for _ in range(12):
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(time.sleep, 0.01)
        pool.shutdown(wait=False)
    print("ready", flush=True)
    time.sleep(30)
    print("slept", flush=True)
"""


def _start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    full.update(env or {})
    process = subprocess.Popen(
        args, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    return process


def _terminate(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=TIMEOUT)
    return out, err


def test_sigterm_writes_report_and_summary_and_still_ends_by_sigterm(tmp_path: Path) -> None:
    write(tmp_path / "app.py", TERM)
    expected = _start([sys.executable, "app.py"], tmp_path)
    _terminate(expected)
    actual = _start(
        [sys.executable, "-m", "executor_guard", "--report", "r.json", "app.py"],
        tmp_path,
    )
    _, err = _terminate(actual)
    assert actual.returncode == expected.returncode == -signal.SIGTERM
    assert "[churn, nowait_pending] app.py:12 in <module>" in err
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12


def test_sigterm_chains_the_hosts_handler_which_decides_the_status(tmp_path: Path) -> None:
    write(tmp_path / "app.py", TERM)
    process = _start(
        [sys.executable, "-m", "executor_guard", "--report", "r.json", "app.py", "handler"],
        tmp_path,
    )
    out, _ = _terminate(process)
    assert process.returncode == 0
    assert "host handler ran" in out
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path) -> None:
    write(tmp_path / "app.py", TERM.replace("time.sleep(30)", "time.sleep(2)"))
    process = _start(
        [sys.executable, "-m", "executor_guard", "-q", "app.py", "ignore"],
        tmp_path,
    )
    out, _ = _terminate(process)
    assert process.returncode == 0
    assert "slept" in out


def test_environment_activation_reports_on_sigterm_when_asked(tmp_path: Path) -> None:
    write(tmp_path / "app.py", TERM)
    env = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": "r.json"}
    process = _start([sys.executable, "app.py"], tmp_path, env)
    _terminate(process)
    assert process.returncode == -signal.SIGTERM
    assert not (tmp_path / "r.json").exists()  # not asked: the host's SIGTERM is untouched
    process = _start([sys.executable, "app.py"], tmp_path, {**env, "EXECUTOR_GUARD_SIGTERM": "1"})
    _terminate(process)
    assert process.returncode == -signal.SIGTERM
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12


OS_EXIT = """
    import os, sys, time
    from concurrent.futures import ThreadPoolExecutor
    for _ in range(12):
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(time.sleep, 0.01)
        pool.shutdown(wait=False)
    sys.stdout.flush()
    os._exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize(("code", "status"), [("0", 3), ("5", 5)])
def test_os_exit_writes_the_report_and_fail_on_decides(
    tmp_path: Path, code: str, status: int
) -> None:
    write(tmp_path / "app.py", OS_EXIT)
    result = guarded("--fail-on", "churn", "--report", "r.json", "app.py", code, cwd=tmp_path)
    assert result.returncode == status, result.stderr
    assert "[churn, nowait_pending] app.py:5 in <module>" in result.stderr
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12


def test_os_exit_under_environment_activation_writes_the_report(tmp_path: Path) -> None:
    write(tmp_path / "app.py", OS_EXIT)
    env = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": "r.json"}
    result = run([sys.executable, "app.py", "7"], tmp_path, env)
    assert result.returncode == 7
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12


# -- report paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("missing/r.json", "does not exist"),
        (".", "it is a directory"),
        ("file.txt/r.json", "is not a directory"),
        ("locked/r.json", "is not writable"),
    ],
)
def test_an_unwritable_report_path_is_found_before_the_program_runs(
    tmp_path: Path, path: str, reason: str
) -> None:
    if reason == "is not writable" and os.geteuid() == 0:
        pytest.skip("root writes everywhere")
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "locked").mkdir(mode=0o500)
    write(tmp_path / "app.py", "print('ran')\n")
    result = guarded("--report", path, "app.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"executor-guard: error: --report: cannot write a report to {path!r}")
    assert reason in line
    assert ".tmp" not in line

    env = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": path}
    result = run([sys.executable, "app.py"], tmp_path, env)
    assert result.returncode == 0
    assert result.stdout == "ran\n"
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"executor_guard: EXECUTOR_GUARD_REPORT: cannot write a report to {path!r}"
    )
    assert line.endswith("; guarding without a report")


def test_a_relative_report_path_and_the_summary_do_not_move_with_chdir(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py", CHILD + "    import os\n    os.chdir(os.path.dirname(os.getcwd()))\n"
    )
    result = guarded("--report", "r.json", "app.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12
    assert f"report written to {tmp_path / 'r.json'}" in result.stderr
    assert "[churn, nowait_pending] app.py:5 in handle" in result.stderr

    env = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": "e.json"}
    result = run([sys.executable, "app.py"], tmp_path, env)
    assert read(tmp_path / "e.json")["totals"]["pools"] == 12


# -- like python: Ctrl-C and the errors before a program starts ----------------------------


def test_ctrl_c_shows_the_programs_frames_only(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        """
        def serve():
            raise KeyboardInterrupt
        serve()
        """,
    )
    expected = plain("app.py", cwd=tmp_path)
    actual = guarded("-q", "app.py", cwd=tmp_path)
    assert actual.returncode == expected.returncode == -signal.SIGINT
    assert actual.stderr == expected.stderr


def test_ctrl_c_just_after_a_dump_still_ends_by_sigint(tmp_path: Path) -> None:
    """Regression: a dump thread still writing while the launcher re-raised the
    program's KeyboardInterrupt made 3.12 exit 1 in about a third of the runs."""
    write(
        tmp_path / "app.py",
        """
        import os, signal
        os.kill(os.getpid(), signal.SIGUSR1)
        raise KeyboardInterrupt
        """,
    )
    statuses = [
        guarded("-q", "--dump-signal", "USR1", "app.py", cwd=tmp_path).returncode for _ in range(12)
    ]
    assert statuses == [-signal.SIGINT] * 12


def test_ctrl_c_from_the_console_script_shows_the_programs_frames_only(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("executor-guard")
    if not script.exists():
        pytest.skip("the console script is not installed beside this interpreter")
    write(tmp_path / "app.py", "raise KeyboardInterrupt\n")
    expected = plain("app.py", cwd=tmp_path)
    actual = run([str(script), "-q", "app.py"], tmp_path)
    assert actual.stderr == expected.stderr


def test_a_real_sigint_ends_like_python(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "import time\nprint('ready', flush=True)\ntime.sleep(30)\n")
    results = []
    for prefix in ([], ["-m", "executor_guard", "-q"]):
        process = _start([sys.executable, *prefix, "app.py"], tmp_path)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=TIMEOUT)
        results.append((process.returncode, err))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "target",
    [
        ["missing.py"],
        ["sub/missing.py"],
        ["adir"],
        ["bad.py"],
        ["syntax.py"],
        ["-mno_such_module"],
        ["-m", "no_such_module"],
        ["-m", "adir.inner"],
    ],
)
def test_a_program_that_cannot_start_gets_pythons_line_and_no_summary(
    tmp_path: Path, target: list[str]
) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "bad.py").write_bytes(b'x = "\xff"\n')
    write(tmp_path / "syntax.py", "x = (\n")
    expected = plain(*target, cwd=tmp_path)
    actual = guarded(*target, cwd=tmp_path)
    assert actual.returncode == expected.returncode
    assert expected.returncode != 0
    if target == ["bad.py"] and sys.version_info[:2] == (3, 10):
        # 3.10's tokenizer names the line after the bad byte; ours names the right one.
        assert actual.stderr.startswith("SyntaxError: Non-UTF-8 code starting with '\\xff'")
    elif target == ["syntax.py"] and sys.version_info < (3, 10):
        # 3.9's parser places an error at the end of a file differently for a file
        # and for a string (what a launcher can compile): the error itself is the same.
        assert actual.stderr.splitlines()[-1] == expected.stderr.splitlines()[-1]
    else:
        assert actual.stderr == expected.stderr
    assert "pools from" not in actual.stderr


def test_dash_m_spelled_together_runs_the_module(tmp_path: Path) -> None:
    write(tmp_path / "tool.py", "import sys\nprint(sys.argv[1:])\n")
    assert plain("-mtool", "-q", "x", cwd=tmp_path).stdout == "['-q', 'x']\n"
    actual = guarded("-q", "-mtool", "-q", "x", cwd=tmp_path)
    assert actual.returncode == 0, actual.stderr
    assert actual.stdout == "['-q', 'x']\n"


def test_the_programs_own_flags_are_never_taken_for_ours(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "import sys\nprint(sys.argv[1:])\n")
    actual = guarded("-q", "app.py", "--report", "--threshold", "-m", cwd=tmp_path)
    assert actual.returncode == 0, actual.stderr
    assert actual.stdout == "['--report', '--threshold', '-m']\n"


def test_a_forked_child_that_returns_ends_as_a_child(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        textwrap.dedent(
            """
            import os, sys
            from concurrent.futures import ThreadPoolExecutor
            pid = os.fork()
            if pid == 0:
                for _ in range(12):
                    ThreadPoolExecutor(max_workers=1).shutdown()
                sys.exit(0)
            os.waitpid(pid, 0)
            """
        ),
    )
    result = guarded("--fail-on", "churn", "--report", "r.json", "app.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    # One summary (the launcher's), covering the child's pools.
    assert result.stderr.count("pools from") == 1
    assert "12 pools from 1 call site" in result.stderr


def test_the_readmes_process_tree_example(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "batches.py"
    result = guarded("--fail-on", "churn", "--report", "tree.json", str(example), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    sites = {site["function"]: site for site in read(tmp_path / "tree.json")["sites"]}
    assert sites["process_item"]["created"] == 24
    assert sites["process_item"]["findings"] == ["churn"]
    assert sites["run_batch"]["created"] == 4
    assert sites["run_batch"]["findings"] == []


# -- found in review: signals, os._exit's arguments, odd command lines ---------------------


def _caught_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigCgt line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc")
def test_an_ignored_sigterm_is_what_children_inherit(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        """
        import signal, subprocess
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.run(["sh", "-c", "kill -TERM $$; echo alive"], capture_output=True)
        print(child.returncode, child.stdout.decode().strip())
        """,
    )
    expected = plain("app.py", cwd=tmp_path)
    actual = guarded("-q", "app.py", cwd=tmp_path)
    assert expected.stdout == "0 alive\n"
    assert actual.stdout == expected.stdout


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc")
def test_forked_workers_get_the_default_sigterm_back(tmp_path: Path) -> None:
    # A worker busy in C code must die at terminate(), not after its call returns.
    write(
        tmp_path / "app.py",
        """
        import multiprocessing, os, signal
        def caught(_):
            for line in open(f"/proc/{os.getpid()}/status"):
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
        if __name__ == "__main__":
            with multiprocessing.get_context("fork").Pool(1) as pool:
                print("worker catches SIGTERM:", pool.map(caught, [0])[0])
            print("launcher catches SIGTERM:", caught(0))
        """,
    )
    actual = guarded("-q", "app.py", cwd=tmp_path)
    assert actual.returncode == 0, actual.stderr
    assert actual.stdout == "worker catches SIGTERM: False\nlauncher catches SIGTERM: True\n"


def test_sigterm_never_waits_on_a_stderr_nobody_reads(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        CHILD
        + """
    import os, sys, time
    os.write(2, b"x" * 200000)  # blocks once the pipe is full: nobody reads it
    """,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "executor_guard", "--report", "r.json", "app.py"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not _blocked_writing(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    try:
        # Generous: this detects a hang, it does not time anything.
        process.wait(timeout=60)
    finally:
        process.kill()
        assert process.stderr is not None
        process.stderr.close()
    assert process.returncode == -signal.SIGTERM
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12


def _blocked_writing(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return stat.split(") ")[1].startswith("S") and "pipe" in wchan


def test_os_exit_with_bad_arguments_raises_as_the_original_and_reports_nothing(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "app.py",
        """
        import os
        from concurrent.futures import ThreadPoolExecutor
        for _ in range(3):
            ThreadPoolExecutor(1).shutdown()
        for bad in [("x",), (3.0,), (), (None,)]:
            try:
                os._exit(*bad)
            except TypeError as error:
                print(type(error).__name__, error)
        for _ in range(3):
            ThreadPoolExecutor(1).shutdown()
        os._exit(status=4)
        """,
    )
    expected = plain("app.py", cwd=tmp_path)
    actual = guarded("-q", "--report", "r.json", "app.py", cwd=tmp_path)
    assert actual.returncode == expected.returncode == 4
    assert actual.stdout == expected.stdout
    assert read(tmp_path / "r.json")["totals"]["pools"] == 6


def test_fail_on_sees_an_os_exit_status_as_the_parent_will(tmp_path: Path) -> None:
    write(tmp_path / "app.py", OS_EXIT)
    result = guarded("-q", "--fail-on", "churn", "app.py", "256", cwd=tmp_path)
    assert result.returncode == 3  # 256 is status 0 to the parent


def test_a_short_cluster_with_m_runs_the_module(tmp_path: Path) -> None:
    write(tmp_path / "tool.py", "import sys\nprint(sys.argv[1:])\n")
    actual = guarded("-qm", "tool", "x", cwd=tmp_path)
    assert actual.returncode == 0, actual.stderr
    assert actual.stdout == "['x']\n"
    assert actual.stderr == ""


@pytest.mark.parametrize("init", ["1/0", "import sys; sys.exit(3)"])
def test_a_package_that_fails_on_import_under_dash_m_reads_as_under_python(
    tmp_path: Path, init: str
) -> None:
    write(tmp_path / "pkg" / "__init__.py", init + "\n")
    write(tmp_path / "pkg" / "mod.py", "print('never')\n")
    expected = plain("-m", "pkg.mod", cwd=tmp_path)
    (tmp_path / "tmp").mkdir()
    actual = guarded("-q", "-m", "pkg.mod", cwd=tmp_path, env={"TMPDIR": str(tmp_path / "tmp")})
    assert actual.returncode == expected.returncode != 0
    assert list((tmp_path / "tmp").iterdir()) == []  # no spool left behind
    # The package's own frames and the error as under python; runpy's lookup
    # frames above them may differ by one.
    assert actual.stderr.splitlines()[-3:] == expected.stderr.splitlines()[-3:]
    assert "executor_guard" not in actual.stderr


def test_an_error_in_a_dash_m_module_shows_the_same_traceback(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "mod.py", "def main():\n    raise ValueError('no')\nmain()\n")
    expected = plain("-m", "pkg.mod", cwd=tmp_path)
    actual = guarded("-q", "-m", "pkg.mod", cwd=tmp_path)
    assert actual.returncode == expected.returncode == 1
    assert actual.stderr == expected.stderr


def test_sigterm_cannot_be_the_dump_signal_under_the_launcher(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "print('ran')\n")
    result = guarded("--dump-signal", "TERM", "app.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("executor-guard: error: --dump-signal: SIGTERM ends")


def test_children_started_elsewhere_write_where_the_parent_was_asked(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "child.py", CHILD)
    write(
        tmp_path / "app.py",
        """
        import subprocess, sys
        subprocess.run([sys.executable, "child.py"], cwd="sub", check=True)
        """,
    )
    (tmp_path / "out").mkdir()
    env = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": "out/r.json"}
    result = run([sys.executable, "app.py"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "cannot write" not in result.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) == 2, files  # the parent's r.json, the child's r-PID.json


def test_exec_writes_the_report_of_the_pools_before_it(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        CHILD
        + """
    import os, sys
    os.execv(sys.executable, [sys.executable, "-c", "print('replaced')"])
    """,
    )
    (tmp_path / "tmp").mkdir()
    result = guarded(
        "--report", "r.json", "app.py", cwd=tmp_path, env={"TMPDIR": str(tmp_path / "tmp")}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "replaced\n"
    assert result.stderr.count("12 pools from 1 call site") == 1
    assert "exit status" not in result.stderr
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_program_on_standard_input_and_a_pyc_run_as_under_python(tmp_path: Path) -> None:
    source = "import sys\nprint(sys.argv, __name__, sys.path[0] == '')\n"
    expected = subprocess.run(
        [sys.executable, "-", "a"], input=source, capture_output=True, text=True, cwd=tmp_path
    )
    actual = subprocess.run(
        [sys.executable, "-m", "executor_guard", "-q", "-", "a"],
        input=source,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert (actual.returncode, actual.stdout) == (expected.returncode, expected.stdout)
    assert expected.stdout == "['-', 'a'] __main__ True\n"
    write(tmp_path / "app.py", "print('compiled ran')\n")
    py_compile.compile(str(tmp_path / "app.py"), cfile=str(tmp_path / "app.pyc"))
    assert plain("app.pyc", cwd=tmp_path).stdout == "compiled ran\n"
    assert guarded("-q", "app.pyc", cwd=tmp_path).stdout == "compiled ran\n"


#: SIGTERM arrives while the launcher's ending imports what its report needs.
SIGTERM_DURING_ENDING = """
from concurrent.futures import ThreadPoolExecutor
for _ in range(12):
    ThreadPoolExecutor(1).shutdown()
""" + sigterm_on_import("executor_guard._process")


def test_sigterm_during_the_launchers_ending_lets_it_finish_then_ends_by_sigterm(
    tmp_path: Path,
) -> None:
    """Regression: a SIGTERM landing while the launcher wrote its report and
    summary ended the process there, without either."""
    write(tmp_path / "app.py", SIGTERM_DURING_ENDING)
    result = run([sys.executable, "-m", "executor_guard", "--report", "r.json", "app.py"], tmp_path)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "[churn] app.py:4 in <module>" in result.stderr
    assert read(tmp_path / "r.json")["totals"]["pools"] == 12
