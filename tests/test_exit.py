"""The exit service: the report at exit, the launcher's take-over, chained signal handlers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Optional

import pytest

import executor_guard
from executor_guard import ConfigError, _exit

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SIGNUM = signal.SIGUSR1


@pytest.fixture(autouse=True)
def _restore_signals() -> Iterator[None]:
    """Leave the signal module and SIGUSR1 as they were, whatever a test did."""
    functions = (signal.signal, signal.getsignal)
    handler = signal.getsignal(SIGNUM)
    yield
    _exit.reset()
    signal.signal, signal.getsignal = functions
    signal.signal(SIGNUM, handler)


def record(calls: list[str], name: str) -> Any:
    def handler(signum: int, frame: Optional[FrameType] = None) -> None:
        calls.append(name)

    return handler


def deliver() -> None:
    """Send SIGUSR1 to this process; Python runs the handler before the next bytecodes."""
    os.kill(os.getpid(), SIGNUM)
    for _ in range(100):  # the handler runs at one of these bytecode boundaries
        pass


def test_signal_functions_and_the_hosts_handler_are_restored_exactly() -> None:
    originals = (signal.signal, signal.getsignal)
    calls: list[str] = []
    host = record(calls, "host")
    signal.signal(SIGNUM, host)

    assert _exit.add_handler(SIGNUM, lambda number: calls.append("ours"))
    assert (signal.signal, signal.getsignal) != originals
    assert signal.signal.__name__ == "signal"
    assert signal.getsignal(SIGNUM) is host
    assert originals[1](SIGNUM) is not host  # ours is the real one

    assert _exit.remove_handler(SIGNUM)
    assert (signal.signal, signal.getsignal) == originals
    assert signal.getsignal(SIGNUM) is host
    deliver()
    expected = ["host"]
    assert expected == calls


def test_a_host_handler_installed_later_is_chained_after_ours() -> None:
    calls: list[str] = []
    before = signal.getsignal(SIGNUM)
    assert _exit.add_handler(SIGNUM, lambda number: calls.append(f"ours {number}"))
    host = record(calls, "host")

    assert before is signal.signal(SIGNUM, host)
    assert host is signal.getsignal(SIGNUM)
    deliver()
    expected = [f"ours {int(SIGNUM)}", "host"]
    assert expected == calls

    assert host is signal.signal(SIGNUM, signal.SIG_IGN)
    ignored = signal.SIG_IGN
    assert ignored == signal.getsignal(SIGNUM)
    deliver()  # ignored by the host, and ours still runs
    expected.append(f"ours {int(SIGNUM)}")
    assert expected == calls


def test_a_bad_action_is_refused_as_by_signal_signal() -> None:
    assert _exit.add_handler(SIGNUM, lambda number: None)
    host = signal.getsignal(SIGNUM)
    with pytest.raises(TypeError):
        signal.signal(SIGNUM, 5)
    assert host is signal.getsignal(SIGNUM)


def test_other_signals_are_untouched() -> None:
    assert _exit.add_handler(SIGNUM, lambda number: None)
    previous = signal.getsignal(signal.SIGUSR2)
    handler = record([], "other")
    try:
        signal.signal(signal.SIGUSR2, handler)
        assert handler is signal.getsignal(signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_our_action_failing_still_runs_the_hosts_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[str] = []

    def failing(number: int) -> None:
        raise RuntimeError("boom")

    assert _exit.add_handler(SIGNUM, failing)
    signal.signal(SIGNUM, record(calls, "host"))
    deliver()
    expected = ["host"]
    assert expected == calls
    assert "internal error while handling signal" in capsys.readouterr().err


def test_a_handler_replaced_behind_our_back_is_left_alone() -> None:
    real_signal = signal.signal
    assert _exit.add_handler(SIGNUM, lambda number: None)
    theirs = record([], "theirs")
    real_signal(SIGNUM, theirs)  # a reference to signal.signal taken before ours
    assert not _exit.remove_handler(SIGNUM)
    assert theirs is signal.getsignal(SIGNUM)
    assert signal.signal is real_signal


def test_functions_someone_wrapped_since_stay_and_pass_through() -> None:
    originals = (signal.signal, signal.getsignal)
    assert _exit.add_handler(SIGNUM, lambda number: None)
    ours = signal.signal

    def theirs(sig: Any, action: Any) -> Any:
        return ours(sig, action)

    signal.signal = theirs
    assert _exit.remove_handler(SIGNUM)
    assert signal.signal is theirs
    assert signal.getsignal is originals[1]
    handler = record([], "later")
    signal.signal(SIGNUM, handler)  # passes straight through to the original
    assert handler is originals[1](SIGNUM)


def test_outside_the_main_thread_nothing_is_installed() -> None:
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(_exit.add_handler(SIGNUM, print)))
    thread.start()
    thread.join()
    expected = [False]
    assert expected == results
    assert _exit.remove_handler(SIGNUM) is False


def test_add_handler_is_idempotent_per_signal() -> None:
    calls: list[str] = []
    assert _exit.add_handler(SIGNUM, lambda number: calls.append("first"))
    functions = (signal.signal, signal.getsignal)
    assert _exit.add_handler(SIGNUM, lambda number: calls.append("second"))
    assert functions == (signal.signal, signal.getsignal)
    deliver()
    expected = ["first"]
    assert expected == calls


def test_after_fork_in_child_forgets_the_take_over() -> None:
    _exit.take_over()
    assert _exit._this_process().taken_over
    _exit.after_fork_in_child()
    assert not _exit._this_process().taken_over


@pytest.mark.parametrize(
    ("configured", "owner", "expected"),
    [
        (None, False, None),
        ("r-{pid}.json", False, "r-{pid}.json"),
        ("r.json", True, "r.json"),
        ("r.json", False, "r-{pid}.json"),
        ("out/report", False, "out/report-{pid}.json"),
    ],
)
def test_each_process_writes_its_own_report_file(
    monkeypatch: pytest.MonkeyPatch, configured: Optional[str], owner: bool, expected: Optional[str]
) -> None:
    monkeypatch.setenv(_exit.OWNER_ENV, str(os.getpid() if owner else os.getpid() + 1))
    assert expected == _exit.report_path(configured)


def test_under_the_launcher_other_processes_leave_the_path_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(_exit.OWNER_ENV, str(os.getpid() + 1))
    monkeypatch.setenv(_exit.SPOOL_ENV, "/somewhere")
    assert _exit.report_path("r.json") is None
    assert _exit.report_path("r-{pid}.json") == "r-{pid}.json"


def test_os_exit_is_wrapped_while_registered_and_restored_exactly() -> None:
    original = os._exit
    _exit.report_at_exit()
    assert os._exit is not original
    assert os._exit.__wrapped__ is original  # type: ignore[attr-defined]
    _exit.reset()
    assert os._exit is original


def test_finish_runs_the_finisher_once_and_it_decides_the_status() -> None:
    calls: list[int] = []

    def finisher(status: int) -> int:
        calls.append(status)
        return 3

    _exit.take_over(finisher)
    assert _exit.finish(0) == 3
    assert _exit.finish(0) == 0
    assert calls == [0]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing/r.json", "does not exist"),
        ("file/r.json", "is not a directory"),
        (".", "directory"),
    ],
)
def test_check_report_path_says_why_a_path_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, reason: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    assert _exit.check_report_path("ok-{pid}.json") is None
    problem = _exit.check_report_path(name)
    assert problem is not None
    assert reason in problem


# -- whole processes ------------------------------------------------------------------


def run(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_report_is_written_once_at_exit(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        import executor_guard
        from concurrent.futures import ThreadPoolExecutor
        from executor_guard import _exit

        executor_guard.install(report_path="report.json")
        _exit.claim_report_path()
        _exit.report_at_exit()
        _exit.report_at_exit()
        ThreadPoolExecutor(1).shutdown()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "report.json").read_text())["totals"]["pools"] == 1
    expected = ["report.json"]
    assert expected == sorted(path.name for path in tmp_path.iterdir())


def test_taken_over_the_writer_stands_down_but_forked_children_write_theirs(
    tmp_path: Path,
) -> None:
    result = run(
        tmp_path,
        """
        import os
        import executor_guard
        from executor_guard import _exit

        executor_guard.install(report_path="report.json")
        _exit.claim_report_path()
        _exit.report_at_exit()
        _exit.take_over()
        pid = os.fork()
        if pid == 0:
            from concurrent.futures import ThreadPoolExecutor

            ThreadPoolExecutor(1).shutdown()
            raise SystemExit(0)  # an ordinary exit: atexit runs in the child
        os.waitpid(pid, 0)
        print(pid)
        """,
    )
    assert result.returncode == 0, result.stderr
    child = int(result.stdout)
    expected = [f"report-{child}.json"]
    assert expected == sorted(path.name for path in tmp_path.iterdir())


def test_fork_pool_workers_write_their_reports(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        import multiprocessing, os, warnings
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
        import executor_guard
        from executor_guard import _exit

        def pid(_):
            ThreadPoolExecutor(1).shutdown()
            return os.getpid()

        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        executor_guard.install(report_path="report-{pid}.json")
        _exit.report_at_exit()
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            workers = set(pool.map(pid, range(8)))
        print(os.getpid(), *sorted(workers))
        """,
    )
    assert result.returncode == 0, result.stderr
    ours, *workers = result.stdout.split()
    written = {path.name for path in tmp_path.glob("report-*.json")}
    # Every process that built a pool wrote its own; a worker that got no task
    # (one may run all eight) built none and leaves no file behind.
    assert {f"report-{pid}.json" for pid in (ours, *workers)} == written


SERVER = """
    import os, signal, sys, threading, time
    import executor_guard
    from concurrent.futures import ThreadPoolExecutor
    from executor_guard import _exit

    executor_guard.install(report_path="dump-{pid}.json", threshold=10**9)
    assert _exit.dump_on_signal("SIGUSR1")

    def host(signum, frame):
        print("host handler ran", flush=True)

    signal.signal(signal.SIGUSR1, host)  # the host's, after ours
    assert signal.getsignal(signal.SIGUSR1) is host
    ThreadPoolExecutor(1).shutdown()
    os.kill(os.getpid(), signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not os.path.exists(f"dump-{os.getpid()}.json") and time.monotonic() < deadline:
        time.sleep(0.05)
    for thread in threading.enumerate():
        if thread.name == "executor_guard-dump":
            thread.join()
    print("still running", flush=True)
"""


def test_a_real_signal_dumps_the_report_and_chains_the_hosts_handler(tmp_path: Path) -> None:
    result = run(tmp_path, SERVER)
    assert result.returncode == 0, result.stderr
    expected = "host handler ran\nstill running\n"
    assert expected == result.stdout
    [dump] = tmp_path.glob("dump-*.json")
    assert json.loads(dump.read_text())["totals"]["pools"] == 1
    assert f"report written to {dump} on signal {int(signal.SIGUSR1)}" in result.stderr


# -- the endings asked for through install() -----------------------------------------


def test_install_report_path_writes_the_report_at_exit(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        import os
        import executor_guard
        from concurrent.futures import ThreadPoolExecutor

        executor_guard.install(report_path="out.json")
        os.mkdir("elsewhere")
        os.chdir("elsewhere")  # the path was resolved when install() was called
        ThreadPoolExecutor(1).shutdown()
        """,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["totals"]["pools"] == 1


def test_install_refuses_a_report_path_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        executor_guard.install(report_path=str(tmp_path / "missing" / "r.json"))
    assert raised.value.source == "report_path="
    assert "does not exist" in str(raised.value)
    assert not executor_guard.is_installed()


def test_install_dump_signal_dumps_and_the_process_lives_until_uninstall(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        import os, signal, threading, time
        import executor_guard
        from concurrent.futures import ThreadPoolExecutor

        executor_guard.install(dump_signal="USR1", report_path="dump.json")
        ThreadPoolExecutor(1).shutdown()
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while not os.path.exists("dump.json") and time.monotonic() < deadline:
            time.sleep(0.05)
        for thread in threading.enumerate():
            if thread.name == "executor_guard-dump":
                thread.join()
        print("alive", flush=True)
        executor_guard.uninstall()
        print(signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL, flush=True)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "alive\nTrue\n"
    assert json.loads((tmp_path / "dump.json").read_text())["totals"]["pools"] == 1


def test_install_refuses_signal_handlers_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    def install() -> None:
        try:
            executor_guard.install(dump_signal="USR2")
        except ConfigError as error:
            errors.append(error)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    [error] = errors
    assert "main thread" in str(error) and "dump_signal=" in str(error)
    assert not executor_guard.is_installed()


def test_install_refuses_fail_on_which_only_a_launcher_can_carry_out() -> None:
    with pytest.raises(ConfigError, match=r"fail_on=.*exit status"):
        executor_guard.install(fail_on="churn")
    executor_guard.install(fail_on="never")  # the default is no request at all
    assert executor_guard.is_installed()


def test_install_sigterm_reports_before_sigterm_ends_the_process(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        import os, signal, time
        import executor_guard
        from concurrent.futures import ThreadPoolExecutor

        executor_guard.install(sigterm=True, report_path="term.json")
        ThreadPoolExecutor(1).shutdown()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        """,
    )
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert json.loads((tmp_path / "term.json").read_text())["totals"]["pools"] == 1
