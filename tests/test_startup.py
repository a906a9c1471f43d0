"""The start-up hook's decisions, in process (tests/integration/test_environment.py: for real)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import executor_guard
from executor_guard import _config, _exit, _startup


@pytest.fixture(autouse=True)
def _restore_exit_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(_exit.OWNER_ENV, "")  # restored, or removed again, after the test
    monkeypatch.delenv(_exit.OWNER_ENV)
    yield
    _exit.reset()


def test_a_bad_strict_switch_is_one_line_and_the_guard_stays_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_STRICT": "maybe"}
    assert _startup._activate(environ) is None
    assert not executor_guard.is_installed()
    expected = [
        "executor_guard: EXECUTOR_GUARD_STRICT: invalid value 'maybe' "
        "(expected 0/1, true/false, yes/no or on/off); the guard is off"
    ]
    assert expected == capsys.readouterr().err.splitlines()


def test_a_bad_strict_switch_is_the_line_reported_over_another_bad_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {
        "EXECUTOR_GUARD": "log",
        "EXECUTOR_GUARD_THRESHOLD": "ten",
        "EXECUTOR_GUARD_STRICT": "sure",
    }
    assert _startup._activate(environ) is None
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("executor_guard: EXECUTOR_GUARD_STRICT: invalid value 'sure'")


def test_strict_is_ignored_while_the_guard_is_off(capsys: pytest.CaptureFixture[str]) -> None:
    assert _startup._activate({"EXECUTOR_GUARD": "0", "EXECUTOR_GUARD_STRICT": "maybe"}) is None
    assert not capsys.readouterr().err


@pytest.mark.parametrize("spelling", ["1", "true", "YES", "On"])
def test_every_true_spelling_of_strict_exits_on_a_bad_value(spelling: str) -> None:
    code = (
        "from executor_guard import _startup\n"
        "_startup._activate({'EXECUTOR_GUARD': 'log', 'EXECUTOR_GUARD_THRESHOLD': 'ten',"
        f" 'EXECUTOR_GUARD_STRICT': {spelling!r}}})\n"
        "print('not reached')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == ""
    expected = [
        "executor_guard: EXECUTOR_GUARD_THRESHOLD: invalid value 'ten' "
        "(expected an integer from 2 to 1000000000); exiting (EXECUTOR_GUARD_STRICT=1)"
    ]
    assert expected == result.stderr.splitlines()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_activation_uses_the_exit_service() -> None:
    host = signal.getsignal(signal.SIGUSR2)
    guard = _startup._activate(
        {
            "EXECUTOR_GUARD": "raise",
            "EXECUTOR_GUARD_REPORT": "/tmp/never-written.json",
            "EXECUTOR_GUARD_DUMP_SIGNAL": "usr2",
        }
    )
    assert guard is not None
    expected = ("raise", "SIGUSR2")
    assert expected == (guard.config.mode, guard.config.dump_signal)
    assert os.environ[_exit.OWNER_ENV] == str(os.getpid())
    assert host is signal.getsignal(signal.SIGUSR2)  # the host's answer, ours installed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_dump_signal_of_sigterm_is_ignored_so_sigterm_still_ends_the_process() -> None:
    """Regression: EXECUTOR_GUARD_DUMP_SIGNAL=TERM made the start-up hook turn
    SIGTERM into "write a report and go on": the service outlived every stop."""
    code = (
        "import os, signal, time\n"
        "from executor_guard import _startup\n"
        "_startup._activate({'EXECUTOR_GUARD': 'log', 'EXECUTOR_GUARD_DUMP_SIGNAL': 'TERM'})\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(5)\n"
        "print('survived SIGTERM')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -signal.SIGTERM
    assert result.stdout == ""
    expected = [
        "executor_guard: EXECUTOR_GUARD_DUMP_SIGNAL=TERM ignored: SIGTERM must still end the "
        "process (EXECUTOR_GUARD_SIGTERM=1 writes the report before it does); choose another "
        "signal (USR1, USR2)"
    ]
    assert expected == result.stderr.splitlines()


# -- the .pth line itself, run as site runs it (twice in a venv) --------------------

PTH_LINE = (Path(__file__).parent.parent / "src" / "executor_guard.pth").read_text()


def _run_pth_line(tmp_path: Path, value: str) -> subprocess.CompletedProcess[str]:
    """Run the hook's line twice, as ``site`` does in a venv, with a stand-in package.

    The stand-in ``executor_guard`` on ``sys.path`` prints when its ``_startup``
    is imported, then fails to import it: whether the line imported the package
    and how it says that the import failed, without touching the real one.
    """
    package = tmp_path / "executor_guard"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "_startup.py").write_text("print('imported')\nraise ImportError('broken')\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\nfor _ in '12': exec({PTH_LINE!r})\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    env["EXECUTOR_GUARD"] = value
    return subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("value", ["", " ", *_config.FALSE, *(v.upper() for v in _config.FALSE)])
def test_the_pth_line_imports_nothing_for_every_off_value(tmp_path: Path, value: str) -> None:
    """The line restates _config.FALSE (it cannot import it): the two must agree."""
    result = _run_pth_line(tmp_path, value)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_broken_install_is_one_line_once_and_the_program_runs(tmp_path: Path) -> None:
    result = _run_pth_line(tmp_path, "log")
    assert result.returncode == 0
    assert result.stdout == "imported\nimported\n"  # both passes tried; one said so
    expected = ["executor_guard: start-up hook failed (ImportError('broken')); the guard is off"]
    assert expected == result.stderr.splitlines()


@pytest.mark.parametrize(
    ("words", "module"),
    [
        (["-m", "executor_guard", "app.py"], "executor_guard"),
        (["-mexecutor_guard"], "executor_guard"),
        (["-Im", "executor_guard"], "executor_guard"),
        (["-I", "-X", "dev", "-W", "error", "-m", "executor_guard"], "executor_guard"),
        (["-Xdev", "-Werror", "-m", "pkg.tool"], "pkg.tool"),
        (["--check-hash-based-pycs", "always", "-m", "pkg"], "pkg"),
        (["app.py", "-m", "executor_guard"], None),
        (["-c", "pass", "-m", "executor_guard"], None),
        (["-", "-m", "executor_guard"], None),
        (["-m"], None),
    ],
)
def test_the_module_a_command_line_runs_is_read_past_the_interpreters_options(
    words: list[str], module: str | None
) -> None:
    assert _startup._module_run(words) == module


@pytest.mark.parametrize(
    ("argv", "command", "launcher"),
    [
        (["/venv/bin/executor-guard", "app.py"], None, True),
        ([os.path.join("venv", "Scripts", "executor-guard.exe"), "app.py"], None, True),
        (["/home/me/executor-guard.py"], None, False),
        (["-m", "app.py"], ["python", "-m", "executor_guard", "app.py"], True),
        (["-m", "app.py"], ["python", "-I", "-m", "executor_guard.__main__", "app.py"], True),
        (["-m"], ["python", "-m", "json.tool"], False),
        (["app.py", "-m", "executor_guard"], ["python", "app.py", "-m", "executor_guard"], False),
    ],
)
def test_the_launchers_own_process_is_told_apart_at_start_up(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], command: list[str] | None, launcher: bool
) -> None:
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", command or ["python", *argv], raising=False)
    assert _startup._is_launcher() is launcher


def test_a_failure_telling_the_launcher_apart_never_reaches_the_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> bool:
        raise RuntimeError("no argv")

    monkeypatch.setattr(_startup, "_is_launcher", broken)
    monkeypatch.setattr(_startup._STARTUP, "done", False)
    assert _startup.activate() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error while activating from the environment (RuntimeError: no argv)" in err
