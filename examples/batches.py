"""A batch job as a process tree: a process pool per batch, a thread pool per item.

Run it under the launcher; the summary covers the parent and every worker:

    python -m executor_guard --fail-on churn examples/batches.py
"""

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor


def fetch(item: int) -> int:
    time.sleep(0.001)
    return item * 2


def process_item(item: int) -> int:
    # A thread pool per item, inside the worker process.
    with ThreadPoolExecutor(max_workers=4) as pool:
        return sum(pool.map(fetch, range(item, item + 4)))


def run_batch(batch: list[int]) -> list[int]:
    # A process pool per batch.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        return list(pool.map(process_item, batch))


if __name__ == "__main__":
    for number in range(4):
        print("batch", number, sum(run_batch(list(range(number * 6, number * 6 + 6)))))
