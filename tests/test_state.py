"""The state owner's record of report-time imports (_state.Importing): it never blocks."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

import executor_guard
from executor_guard import _state
from executor_guard._state import STATE


@pytest.fixture
def half_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Any], None]:
    """``imports(name, inside)``: import a fresh module ``name`` (a report-time one
    for the test) whose body calls ``inside()``, half imported while it runs."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_state, "REPORT_TIME_MODULES", ("eg_test_",))

    def imports(name: str, inside: Any) -> None:
        (tmp_path / f"{name}.py").write_text("import sys\nsys._eg_test_inside()\n")
        monkeypatch.setattr(sys, "_eg_test_inside", inside, raising=False)
        monkeypatch.delitem(sys.modules, name, raising=False)
        __import__(name)

    return imports


@pytest.fixture
def lost_exit() -> None:
    """A report-time ``with`` block whose exit a signal handler's exception skipped."""

    def enter_only() -> None:
        STATE.importing().__enter__()

    enter_only()
    enter_only()  # the same function again: the same frame address on 3.9


@pytest.mark.usefixtures("lost_exit")
def test_an_exit_lost_to_an_exception_keeps_no_other_thread_waiting() -> None:
    """Regression: the record was a lock, and a KeyboardInterrupt between its
    acquire and its release left it held: the next report in any other
    thread (the dump thread, a pool's warning) waited for ever."""
    guard = executor_guard.install(mode="log", threshold=10**9)
    ThreadPoolExecutor(1).shutdown()
    seen: list[object] = []

    def other_thread() -> None:
        seen.append(STATE.importing.others())
        seen.append(guard.report(process_figures=False).to_dict()["totals"]["pools"])

    thread = threading.Thread(target=other_thread, daemon=True)
    thread.start()
    thread.join(30)
    assert seen == [False, 1]  # a fork would not wait for it either


@pytest.mark.usefixtures("lost_exit")
def test_an_exit_lost_to_an_exception_defers_nothing(half_imported: Any) -> None:
    """A signal handler is told to act now (SIGTERM must still end the process)."""
    told: list[bool] = []
    half_imported("eg_test_lost", lambda: told.append(STATE.importing.defer(lambda: None)))
    assert told == [False]


def test_a_deferred_action_runs_when_this_threads_import_is_done(half_imported: Any) -> None:
    ran: list[object] = []
    with STATE.importing():
        with STATE.importing():
            half_imported(
                "eg_test_nested",
                lambda: ran.append(STATE.importing.defer(lambda: ran.append("deferred"))),
            )
        ran.append("inner done")
    ran.append("outer done")
    assert ran == [True, "inner done", "deferred", "outer done"]


def test_nothing_is_deferred_once_the_imports_are_done() -> None:
    with STATE.importing():
        assert STATE.importing.defer(lambda: None) is False  # no module half imported


def test_another_threads_deferred_action_runs_in_that_thread_only(half_imported: Any) -> None:
    """Regression: one list for every thread, so any thread leaving a report-time
    block ran the main thread's deferred SIGTERM (from a non-main thread, where
    the process then left by status 143 or went on)."""
    ran: list[str] = []
    deferred, release = threading.Event(), threading.Event()

    def inside() -> None:
        assert STATE.importing.defer(lambda: ran.append(threading.current_thread().name))
        deferred.set()
        release.wait(30)

    def importer() -> None:
        with STATE.importing():
            half_imported("eg_test_thread", inside)

    thread = threading.Thread(target=importer, name="importer")
    thread.start()
    assert deferred.wait(30)
    with STATE.importing():
        pass
    assert ran == []
    release.set()
    thread.join(30)
    assert ran == ["importer"]
