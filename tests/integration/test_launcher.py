"""The launcher, run for real: it must behave exactly like ``python`` plus a report.

Differential tests in the manner of coverage's ``test_process.py``: the same
script runs under ``python`` and under ``python -m executor_guard`` in real
subprocesses, and everything the script can observe is compared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..helpers import wait_for_file

TIMEOUT = 120

PROBE = """
    import json, os, sys
    print(json.dumps({
        "argv": sys.argv,
        "name": __name__,
        "file": __file__,
        "path0": sys.path[0],
        "cwd": os.getcwd(),
        "spec": repr(__spec__) if "__spec__" in globals() and __spec__ is None else "module",
        "mp": "multiprocessing" in sys.modules,
    }))
"""


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    full_env.update(env or {})
    return subprocess.run(
        args, capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT, env=full_env
    )


def plain(*args: str, cwd: Path, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, *flags, *args], cwd)


def guarded(
    *args: str, cwd: Path, flags: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, *flags, "-m", "executor_guard", *args], cwd, env)


@pytest.mark.parametrize("flags", [(), ("-I",)])
def test_a_script_sees_what_it_sees_under_python(tmp_path: Path, flags: tuple[str, ...]) -> None:
    write(tmp_path / "sub" / "probe.py", PROBE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    args = ("../sub/probe.py", "--flag", "value", "-m", "x")
    expected = plain(*args, cwd=elsewhere, flags=flags)
    actual = guarded(*args, cwd=elsewhere, flags=flags)
    assert expected.returncode == actual.returncode == 0, actual.stderr
    assert json.loads(actual.stdout) == json.loads(expected.stdout)
    assert json.loads(actual.stdout)["mp"] is False


def test_a_module_sees_what_it_sees_under_python_dash_m(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "tool.py", PROBE)
    expected = plain("-m", "pkg.tool", "a", "--b", cwd=tmp_path)
    actual = guarded("-m", "pkg.tool", "a", "--b", cwd=tmp_path)
    assert expected.returncode == actual.returncode == 0, actual.stderr
    assert json.loads(actual.stdout) == json.loads(expected.stdout)


def test_the_console_script_runs_the_target_too(tmp_path: Path) -> None:
    script = shutil.which("executor-guard", path=os.path.dirname(sys.executable))
    assert script is not None
    write(tmp_path / "probe.py", PROBE)
    expected = plain("probe.py", "1", cwd=tmp_path)
    actual = run([script, "probe.py", "1"], tmp_path)
    assert actual.returncode == 0, actual.stderr
    assert json.loads(actual.stdout) == json.loads(expected.stdout)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("import sys; print('bye'); sys.exit(4)", 4),
        ("import sys; sys.exit('fatal: no config')", 1),
        ("import sys; sys.exit()", 0),
        ("raise SystemExit(300)", 300 & 0xFF),
    ],
)
def test_exit_statuses_are_the_targets(tmp_path: Path, body: str, status: int) -> None:
    write(tmp_path / "app.py", body)
    expected = plain("app.py", cwd=tmp_path)
    actual = guarded("-q", "app.py", cwd=tmp_path)
    assert expected.returncode == actual.returncode == status
    assert actual.stdout == expected.stdout
    assert actual.stderr == expected.stderr


def test_an_uncaught_exception_prints_the_same_traceback_and_exits_1(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        """
        def handler():
            raise ValueError("bad input")

        print("before")
        handler()
        """,
    )
    expected = plain("app.py", cwd=tmp_path)
    actual = guarded("-q", "app.py", cwd=tmp_path)
    assert expected.returncode == actual.returncode == 1
    assert actual.stdout == expected.stdout == "before\n"
    assert actual.stderr == expected.stderr
    assert "executor_guard" not in actual.stderr


def test_keyboard_interrupt_ends_the_process_like_python(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "print('working', flush=True)\nraise KeyboardInterrupt\n")
    expected = plain("app.py", cwd=tmp_path)
    actual = guarded("-q", "--report", str(tmp_path / "r.json"), "app.py", cwd=tmp_path)
    assert actual.returncode == expected.returncode == -signal.SIGINT
    assert actual.stderr.rstrip().endswith("KeyboardInterrupt")
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == 1


CHURN = textwrap.dedent("""
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor

    def handle(request):
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(time.sleep, 0.05)  # still running at the shutdown below
        pool.shutdown(wait=False)
        print("handled", request)

    for request in range(12):
        handle(request)
""")


@pytest.mark.parametrize(
    ("tail", "status"),
    [("", 0), ("sys.exit(4)", 4), ("raise RuntimeError('boom')", 1)],
)
def test_the_report_is_written_and_printed_whatever_the_ending(
    tmp_path: Path, tail: str, status: int
) -> None:
    write(tmp_path / "app.py", CHURN + "\n" + tail + "\n")
    result = guarded("--report", str(tmp_path / "report-{pid}.json"), "app.py", cwd=tmp_path)
    assert result.returncode == status
    assert result.stdout.count("handled") == 12
    [path] = tmp_path.glob("report-*.json")
    data = json.loads(path.read_text())
    site = data["sites"][0]
    assert (site["function"], site["line"], site["created"]) == ("handle", 7, 12)
    assert site["findings"] == ["churn", "nowait_pending"]
    assert f"executor_guard: report written to {path}" in result.stderr
    assert "[churn, nowait_pending] app.py:7 in handle" in result.stderr
    assert "> app.py:7 in handle" in result.stderr


def test_quiet_silences_the_summary_and_a_clean_run_says_one_line(tmp_path: Path) -> None:
    write(tmp_path / "app.py", CHURN)
    assert (
        "executor_guard"
        not in guarded("-q", "app.py", cwd=tmp_path)
        .stderr.replace("ExecutorChurnWarning", "")
        .split("\n", 2)[-1]
    )
    write(
        tmp_path / "clean.py",
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor() as p: p.submit(int)\n",
    )
    result = guarded("clean.py", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "executor_guard: 1 pool from 1 call site; 0 with findings (mode warn, threshold 10)"
    ]


@pytest.mark.parametrize(
    ("option", "script", "status"),
    [
        ("churn", CHURN, 3),
        ("any", CHURN, 3),
        ("never", CHURN, 0),
        ("churn", CHURN + "\nsys.exit(5)\n", 5),
        (
            "churn",
            "from concurrent.futures import ThreadPoolExecutor\n"
            "p = ThreadPoolExecutor(1)\np.submit(int)\np.shutdown(wait=False)\n",
            0,
        ),
    ],
)
def test_fail_on(tmp_path: Path, option: str, script: str, status: int) -> None:
    write(tmp_path / "app.py", script)
    result = guarded("-q", "--fail-on", option, "app.py", cwd=tmp_path)
    assert result.returncode == status, result.stderr


def test_fail_on_any_counts_findings_other_than_churn(tmp_path: Path) -> None:
    write(
        tmp_path / "app.py",
        "import gc\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "p = ThreadPoolExecutor(1)\ndel p\ngc.collect()\n",
    )
    assert guarded("-q", "--fail-on", "churn", "app.py", cwd=tmp_path).returncode == 0
    assert guarded("-q", "--fail-on", "any", "app.py", cwd=tmp_path).returncode == 3


SPAWN = """
    import sys
    BEFORE = "multiprocessing" in sys.modules  # anything the launcher imported?

    import dataclasses
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    @dataclasses.dataclass
    class Order:
        item: str
        quantity: int

    def total(order: Order) -> int:
        return order.quantity * 3

    if __name__ == "__main__":
        print("multiprocessing imported before the script:", BEFORE)
        multiprocessing.set_start_method("spawn")
        with ProcessPoolExecutor(max_workers=2) as pool:
            print(sum(pool.map(total, [Order("a", 1), Order("b", 2)])))
"""


def test_spawn_workers_can_unpickle_classes_defined_in_the_script(tmp_path: Path) -> None:
    write(tmp_path / "orders.py", SPAWN)
    expected = plain("orders.py", cwd=tmp_path)
    actual = guarded("-q", "orders.py", cwd=tmp_path)
    assert expected.returncode == 0, expected.stderr
    assert actual.returncode == 0, actual.stderr
    assert (
        actual.stdout
        == expected.stdout
        == ("multiprocessing imported before the script: False\n9\n")
    )


def test_options_are_exported_to_child_processes(tmp_path: Path) -> None:
    write(
        tmp_path / "parent.py",
        """
        import subprocess, sys
        code = ("import os; print(sorted((k, v) for k, v in os.environ.items() "
                "if k.startswith('EXECUTOR_GUARD')))")
        subprocess.run([sys.executable, "-c", code], check=True)
        """,
    )
    result = guarded(
        "-q",
        "--mode",
        "log",
        "--threshold",
        "7",
        "--window",
        "30",
        "--report",
        "r-{pid}.json",
        "parent.py",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    exported = dict(eval(result.stdout))
    assert exported["EXECUTOR_GUARD"] == "log"
    assert exported["EXECUTOR_GUARD_THRESHOLD"] == "7"
    assert exported["EXECUTOR_GUARD_WINDOW"] == "30.0"
    # Resolved at start: a child that changes directory writes where it was asked.
    assert exported["EXECUTOR_GUARD_REPORT"] == str(tmp_path / "r-{pid}.json")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--mode", "loud"], "argument --mode: invalid value 'loud'"),
        (["--threshold", "ten"], "argument --threshold: invalid value 'ten'"),
        (["--threshold", "1"], "argument --threshold: invalid value '1'"),
        (["--threshold", "-3"], "argument --threshold: invalid value '-3'"),
        (["--window", "0"], "argument --window: invalid value '0'"),
        (["--window", "later"], "argument --window: invalid value 'later'"),
        (["--stack-depth", "-1"], "argument --stack-depth: invalid value '-1'"),
        (["--stack-depth", "100000"], "argument --stack-depth: invalid value '100000'"),
        (["--log-format", "xml"], "argument --log-format: invalid value 'xml'"),
        (["--log-target", "syslog"], "argument --log-target: invalid value 'syslog'"),
        (["--fail-on", "sometimes"], "argument --fail-on: invalid value 'sometimes'"),
        (["--report", "r-{host}.json"], "argument --report: invalid value 'r-{host}.json'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_every_bad_option_exits_2_with_one_line(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    write(tmp_path / "app.py", "print('should not run')")
    result = guarded(*args, "app.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("executor-guard: error: ")
    assert fragment in lines[0]


def test_a_missing_target_or_option_value_exits_2(tmp_path: Path) -> None:
    for args, fragment in [
        ([], "the following arguments are required: SCRIPT|MODULE"),
        (["--threshold"], "argument --threshold: expected one argument"),
    ]:
        result = guarded(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1
        assert fragment in result.stderr


def test_a_bad_environment_value_exits_2_naming_the_variable(tmp_path: Path) -> None:
    write(tmp_path / "app.py", "print('should not run')")
    result = guarded("app.py", cwd=tmp_path, env={"EXECUTOR_GUARD_THRESHOLD": "many"})
    assert result.returncode == 2
    assert result.stderr == (
        "executor-guard: error: EXECUTOR_GUARD_THRESHOLD: invalid value 'many' "
        "(expected an integer from 2 to 1000000000)\n"
    )


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"EXECUTOR_GUARD": "bogus"}, "EXECUTOR_GUARD: invalid value 'bogus'"),
        (
            {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_FAIL_ON": "findings"},
            "EXECUTOR_GUARD_FAIL_ON: invalid value 'findings'",
        ),
        (
            {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_DUMP_SIGNAL": "SIGTERM"},
            "EXECUTOR_GUARD_DUMP_SIGNAL: SIGTERM ends the program under the launcher",
        ),
        (
            {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": "missing/r.json"},
            "EXECUTOR_GUARD_REPORT: cannot write a report to 'missing/r.json'",
        ),
    ],
)
@pytest.mark.parametrize("command", ["-m", "-I -m", "script"])
def test_a_bad_environment_is_one_line_with_the_start_up_hook_armed(
    tmp_path: Path, env: dict[str, str], fragment: str, command: str
) -> None:
    """Regression: with EXECUTOR_GUARD set, the start-up hook also activated in
    the launcher's own process and said each problem a second time, with
    another consequence ("the guard is off", "ignored") than the launcher's."""
    write(tmp_path / "app.py", "print('should not run')")
    if command == "script":
        script = Path(sys.executable).with_name("executor-guard")
        if not script.exists():
            pytest.skip("no executor-guard script next to this interpreter")
        result = run([str(script), "app.py"], tmp_path, env)
    else:
        result = guarded("app.py", cwd=tmp_path, flags=tuple(command.split()[:-1]), env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"executor-guard: error: {fragment}")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_a_bad_strict_switch_exits_2_instead_of_leaving_every_child_unguarded(
    tmp_path: Path,
) -> None:
    """Regression: the launcher passed a bad EXECUTOR_GUARD_STRICT on to its
    children, whose start-up hooks then each refused it and stayed off."""
    write(tmp_path / "app.py", "print('should not run')")
    result = guarded("app.py", cwd=tmp_path, env={"EXECUTOR_GUARD_STRICT": "maybe"})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "executor-guard: error: EXECUTOR_GUARD_STRICT: invalid value 'maybe' "
        "(expected 0/1, true/false, yes/no or on/off)\n"
    )


def test_a_missing_script_is_reported_like_python(tmp_path: Path) -> None:
    expected = plain("nope.py", cwd=tmp_path)
    actual = guarded("nope.py", cwd=tmp_path)
    assert actual.returncode == expected.returncode == 2
    assert actual.stderr == expected.stderr


def test_report_command_renders_merges_and_rejects(tmp_path: Path) -> None:
    write(tmp_path / "app.py", CHURN)
    for _ in range(2):
        assert guarded("-q", "--report", "r-{pid}.json", "app.py", cwd=tmp_path).returncode == 0
    files = sorted(str(p) for p in tmp_path.glob("r-*.json"))
    assert len(files) == 2

    one = guarded("report", files[0], cwd=tmp_path)
    assert one.returncode == 0
    assert one.stdout.startswith("executor_guard: 12 pools from 1 call site; 1 with findings")

    merged = guarded("report", "--format", "json", *files, cwd=tmp_path)
    assert merged.returncode == 0
    data = json.loads(merged.stdout)
    assert data["totals"]["pools"] == 24
    assert data["sites"][0]["created"] == 24
    assert len(data["processes"]) == 2
    text = guarded("report", *files, cwd=tmp_path).stdout
    assert "merged from 2 processes" in text

    (tmp_path / "empty.json").write_text("")
    (tmp_path / "cut.json").write_text(Path(files[0]).read_text()[:50])
    (tmp_path / "other.json").write_text('{"coverage": true}')
    data["schema"] = 2
    (tmp_path / "future.json").write_text(json.dumps(data))
    for name, problem in [
        ("empty.json", "empty file"),
        ("cut.json", "not valid JSON"),
        ("other.json", "not an executor_guard report"),
        ("future.json", "schema 2 is newer"),
        ("missing.json", "no such file"),
    ]:
        result = guarded("report", files[0], name, cwd=tmp_path)
        assert result.returncode == 2, name
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"executor-guard report: error: {name}: "
            + result.stderr.split(f"{name}: ", 1)[1].rstrip()
        ]
        assert problem in result.stderr


def test_dump_signal_writes_the_report_while_the_program_runs(tmp_path: Path) -> None:
    write(
        tmp_path / "server.py",
        """
        import os, time
        from concurrent.futures import ThreadPoolExecutor
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists("stop") and time.monotonic() < deadline:
            ThreadPoolExecutor(1).shutdown()
        """,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "executor_guard",
            "-q",
            "--threshold",
            "1000000000",
            "--dump-signal",
            "USR1",
            "--report",
            "dump.json",
            "server.py",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGUSR1)
        dump = tmp_path / "dump.json"
        wait_for_file(dump)
        assert json.loads(dump.read_text())["sites"][0]["created"] > 0
        assert process.poll() is None
    finally:
        (tmp_path / "stop").write_text("")
        process.communicate(timeout=60)
    assert process.returncode == 0


def test_the_launcher_takes_over_the_report_of_an_environment_activation(tmp_path: Path) -> None:
    # The program's at-exit handler runs after the launcher wrote the report and
    # before the start-up hook's writer would: that writer must stand down.
    write(
        tmp_path / "app.py",
        CHURN + "\nimport atexit, os\natexit.register(os.remove, 'report.json')\n",
    )
    env = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_REPORT": "report.json"}
    result = guarded("app.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert f"executor_guard: report written to {tmp_path / 'report.json'}" in result.stderr
    expected = ["app.py"]
    assert expected == sorted(path.name for path in tmp_path.iterdir())
