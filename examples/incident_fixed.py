"""The fix for examples/incident.py: one notification pool for the whole service.

    python -m executor_guard examples/incident_fixed.py  # reports nothing
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

NOTIFICATIONS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")


def send_notification(job_id: str, run: int) -> None:
    time.sleep(0.3)  # a slow HTTP call to a chat webhook


def job_event_listener(job_id: str, run: int) -> None:
    NOTIFICATIONS.submit(send_notification, job_id, run)


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
    try:
        for run in range(60):
            scheduler.run_job("sync-inventory", run)
            time.sleep(0.02)
    finally:
        NOTIFICATIONS.shutdown(wait=True)
    print("ran 60 jobs")


if __name__ == "__main__":
    main()
