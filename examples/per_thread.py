"""Request threads that each build a pool and never shut it down.

The pools are collected with their threads, so no snapshot shows them; the
summary shows one new thread per creation and ``never_shutdown``, and the hint
says to share one pool across threads.

    python -m executor_guard examples/per_thread.py
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


def handle(number: int) -> None:
    pool = ThreadPoolExecutor(max_workers=2)
    pool.submit(pow, number, 2).result()


def main() -> None:
    threads = [
        threading.Thread(target=handle, args=(n,), name=f"request-{n}") for n in range(40)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
