"""A handler that builds a pool in a ``with`` block for every request.

Every pool is shut down properly, so nothing piles up, yet each request pays
for starting four threads. executor_guard flags the line as churn and says to
keep one long-lived pool instead.

    python -m executor_guard examples/with_per_request.py
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor


def fetch(url: str) -> int:
    return len(url)  # stands in for an HTTP call


def handle_request(urls: list[str]) -> list[int]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(fetch, urls))


def main() -> None:
    for request in range(25):
        handle_request([f"https://example.com/{request}/{part}" for part in range(4)])


if __name__ == "__main__":
    main()
