"""The state owner's report-time import record (_state.Importing): it never blocks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import executor_guard
from executor_guard._state import STATE


@pytest.fixture
def lost_exit() -> Iterator[None]:
    """A report-time ``with`` block whose exit a signal handler's exception skipped."""

    def enter_only() -> None:
        STATE.importing.__enter__()

    enter_only()
    yield
    STATE.importing.frames.clear()


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
def test_an_exit_lost_to_an_exception_defers_nothing_for_ever() -> None:
    """A signal handler is told to act now (SIGTERM must still end the process)."""
    assert STATE.importing.defer(lambda: None) is False


def test_a_deferred_action_runs_when_this_threads_import_is_done() -> None:
    ran: list[str] = []
    with STATE.importing:
        with STATE.importing:
            assert STATE.importing.defer(lambda: ran.append("deferred"))
        ran.append("inner done")
    ran.append("outer done")
    assert ran == ["inner done", "deferred", "outer done"]
    assert STATE.importing.defer(lambda: None) is False  # nothing under way now
