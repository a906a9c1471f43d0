"""A small but realistic program for the whole-program benchmark (target 6).

A service loop hands 2,000 small requests to one shared ``ThreadPoolExecutor(8)``.
Each request does a little CPU work and a JSON round trip; every 10th request
also does what the incident did — builds its own ``ThreadPoolExecutor(1)``,
submits a notification to it and calls ``shutdown(wait=False)`` — so the
guard has both a long-lived pool and a churning call site to record.

Plain standard library, no executor_guard import: ``bench_workload.py`` runs it
unchanged under ``python``, ``python -m executor_guard -q`` and
``python -X tracemalloc=25``. It prints one line with a checksum so that the
three runs can be checked to have done the same work.
"""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor

REQUESTS = 2000
CHURN_EVERY = 10


def notify(request_id: int, digest: str) -> str:
    """The side task the churning requests hand to their own pool."""
    return json.dumps({"event": "handled", "id": request_id, "digest": digest})


def handle(request_id: int) -> int:
    """One request: parse a payload, compute over it, serialise a response."""
    payload = json.dumps(
        {"id": request_id, "user": f"user-{request_id % 97}", "items": list(range(request_id % 50))}
    )
    request = json.loads(payload)
    total = 0
    for i in range(2000):  # a bit of CPU work
        total += (i * request["id"]) % 7
    digest = hashlib.sha1(payload.encode()).hexdigest()
    response = json.loads(json.dumps({"id": request["id"], "total": total, "digest": digest}))
    if request_id % CHURN_EVERY == 0:
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(notify, request_id, digest)
        pool.shutdown(wait=False)
    return int(response["total"])


def main() -> None:
    """Serve ``REQUESTS`` requests on one shared pool; print a checksum."""
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else REQUESTS
    with ThreadPoolExecutor(max_workers=8) as pool:
        checksum = sum(pool.map(handle, range(requests)))
    print(f"served {requests} requests, checksum {checksum}")


if __name__ == "__main__":
    main()
