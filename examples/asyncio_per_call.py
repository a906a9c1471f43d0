"""A synchronous wrapper that calls ``asyncio.run()`` on every call.

Each ``asyncio.run()`` makes a new event loop, and the loop's first
``run_in_executor(None, ...)`` makes a new default executor: a thread pool per
call, built inside asyncio. executor_guard names your line, the asyncio line
that built the pool, and how to keep one loop.

    python -m executor_guard examples/asyncio_per_call.py
"""

from __future__ import annotations

import asyncio


async def lookup(key: str) -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, len, key)  # stands in for blocking I/O


def lookup_sync(key: str) -> int:
    return asyncio.run(lookup(key))


def main() -> None:
    for index in range(15):
        lookup_sync(f"key-{index}")


if __name__ == "__main__":
    main()
