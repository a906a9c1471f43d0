"""The state owner's record of report-time imports (_state.Importing): it never blocks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import executor_guard
from executor_guard._state import STATE


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


def test_a_block_under_way_in_another_thread_is_seen_and_then_forgotten() -> None:
    """What a fork waits for: another thread inside a block, and only while it is."""
    inside, release = threading.Event(), threading.Event()

    def importer() -> None:
        with STATE.importing():
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=importer)
    thread.start()
    assert inside.wait(30)
    assert STATE.importing.others()
    release.set()
    thread.join(30)
    assert not STATE.importing.others()
