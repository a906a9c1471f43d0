"""The incident executor_guard was built for, in miniature.

A scheduler fires a job event every time a job runs. The event listener sends a
notification through a fresh one-worker pool and does not wait for it:
``shutdown(wait=False)``. At one job every five minutes nobody noticed; at one
per minute (here: time is compressed, 60 runs take about a second) the threads
pile up while notifications are slow, then vanish, so snapshot-based leak
checkers see nothing.

    python -m executor_guard examples/incident.py        # flags the listener
    python -m executor_guard examples/incident_fixed.py  # reports nothing
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor


def send_notification(job_id: str, run: int) -> None:
    time.sleep(0.3)  # a slow HTTP call to a chat webhook


def job_event_listener(job_id: str, run: int) -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(send_notification, job_id, run)
    pool.shutdown(wait=False)


class Scheduler:
    """Just enough of a job scheduler: runs jobs and dispatches their events."""

    def __init__(self) -> None:
        self.listeners = []

    def add_listener(self, listener) -> None:  # type: ignore[no-untyped-def]
        self.listeners.append(listener)

    def _dispatch_event(self, job_id: str, run: int) -> None:
        for listener in self.listeners:
            listener(job_id, run)

    def run_job(self, job_id: str, run: int) -> None:
        self._dispatch_event(job_id, run)


def main() -> None:
    scheduler = Scheduler()
    scheduler.add_listener(job_event_listener)
    for run in range(60):
        scheduler.run_job("sync-inventory", run)
        time.sleep(0.02)
    print("ran 60 jobs")


if __name__ == "__main__":
    main()
