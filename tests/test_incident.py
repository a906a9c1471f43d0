"""The incident this project exists for, reproduced in-process.

A job-event listener builds ``ThreadPoolExecutor(max_workers=1)``, submits one
task and calls ``shutdown(wait=False)`` on every event.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

import executor_guard
from executor_guard import ExecutorChurnError, ExecutorChurnWarning

from .helpers import line_of


def notify(job_id: int) -> None:
    # Long enough that the work is surely still running at shutdown(wait=False).
    time.sleep(0.05)


def scheduler_event_listener(event: int) -> None:
    pool = ThreadPoolExecutor(max_workers=1)  # the incident line
    pool.submit(notify, event)
    pool.shutdown(wait=False)


INCIDENT_LINE = line_of(scheduler_event_listener, "the incident line")


def fire(events: int) -> None:
    for event in range(events):
        scheduler_event_listener(event)


def test_incident_is_flagged_at_the_listener_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with executor_guard.guarded(mode="warn") as guard:
            fire(50)
    report = guard.report().to_dict()

    site = report["sites"][0]
    assert (site["file"], site["line"], site["function"]) == (
        __file__,
        INCIDENT_LINE,
        "scheduler_event_listener",
    )
    assert site["created"] == 50
    assert site["classes"] == {"ThreadPoolExecutor": 50}
    assert site["shutdown"]["nowait"] == 50
    assert site["nowait_pending"] == 50
    assert site["findings"] == ["churn", "nowait_pending"]
    assert site["max_workers"] == {"1": 50}
    assert site["threads"] == {threading.current_thread().name: 50}
    assert report["totals"]["sites_with_findings"] == 1

    churn = [w for w in caught if issubclass(w.category, ExecutorChurnWarning)]
    assert len(churn) == 1
    assert (churn[0].filename, churn[0].lineno) == (__file__, INCIDENT_LINE)
    assert "created 10 times" in str(churn[0].message)


def test_incident_stack_shows_the_path_to_the_listener() -> None:
    with executor_guard.guarded(mode="log", log_format="json"):
        pass  # a guard of its own below; this one only proves nesting is harmless
    with executor_guard.guarded(mode="warn") as guard, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fire(12)
    site = guard.report().to_dict()["sites"][0]
    frames = site["stacks"][0]["frames"]
    assert frames[-1]["function"] == "scheduler_event_listener"
    assert frames[-1]["line"] == INCIDENT_LINE
    assert frames[-1]["app"] is True
    assert frames[-2]["function"] == "fire"
    assert site["stacks"][0]["count"] == 12


def test_incident_in_raise_mode_refuses_the_tenth_pool() -> None:
    with executor_guard.guarded(mode="raise") as guard:
        fire(9)
        # Let the nine tasks finish so the thread count is stable.
        deadline = time.monotonic() + 5
        while threading.active_count() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        threads_before = threading.active_count()
        with pytest.raises(ExecutorChurnError) as excinfo:
            scheduler_event_listener(9)
        assert threading.active_count() == threads_before
    error = excinfo.value
    assert error.attempts == 10
    assert error.threshold == 10
    assert error.site == f"{__file__}:{INCIDENT_LINE} in scheduler_event_listener"
    # The message shows the location as the summary does: relative to the project.
    assert f"{os.path.relpath(__file__)}:{INCIDENT_LINE}" in str(error)
    listener_entries = [
        entry for entry in excinfo.traceback if entry.frame.code.name == "scheduler_event_listener"
    ]
    assert listener_entries and listener_entries[0].lineno + 1 == INCIDENT_LINE

    site = guard.report().to_dict()["sites"][0]
    assert site["created"] == 9
    assert site["refused"] == 1
    assert site["shutdown"]["nowait"] == 9
    assert "churn" in site["findings"]


def test_raise_mode_keeps_refusing_and_never_builds_the_pool() -> None:
    built = []

    class Counting(ThreadPoolExecutor):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            built.append(self)

    def make() -> Counting:
        return Counting(1)

    with executor_guard.guarded(mode="raise", threshold=3) as guard:
        for _ in range(2):
            make().shutdown()
        for _ in range(3):
            with pytest.raises(ExecutorChurnError):
                make()
    assert len(built) == 2
    site = guard.report().to_dict()["sites"][0]
    assert (site["created"], site["refused"]) == (2, 3)
    assert site["classes"] == {"Counting": 2}
