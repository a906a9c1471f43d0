"""Hot-path micro-benchmarks (targets 1-3): what one pool or one task costs under the guard.

1. **Lifecycle** — ``ThreadPoolExecutor(1)`` + one ``submit(int)`` + ``shutdown()``:
   the pattern executor_guard exists to find (a pool per call). Starting and
   joining the worker thread dominates, so the guard must add at most 5 %.
2. **Tight loop** — ``ThreadPoolExecutor(1)`` + ``shutdown()`` with no task: no
   thread ever starts, so this isolates the guard's own per-pool work (call-site
   walk, registry entry, weak reference, shutdown record) against the bare
   constructor; at most 2×.
3. **submit()** on a long-lived pool created under the guard: the guard does not
   patch ``submit``, so this checks that a guarded pool's tasks cost nothing
   extra (≤ 1.02×).

Method: the guarded and unguarded variants alternate round by round in one
process (see ``_common.interleave``). Thread start-up on a shared 2-core
machine varies several-fold from one pool to the next, so the lifecycle uses
many short rounds (600 × 20 pools): the median of that many adjacent-pair
ratios has a standard error of about 1-2 % (from the spread of the ratios).
A guarded round is bracketed by
``executor_guard.install(mode="log", threshold=10**9)`` / ``uninstall()`` outside
the timed section; ``install`` resumes the same registry, so the call site is
in its steady state (past the first 16 creations, whose stacks are always
captured; after that one creation in 64 captures its stack, as in a long-running
program). The threshold is huge so the policy never acts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import _common

import executor_guard

GUARD_OPTIONS: dict[str, Any] = {"mode": "log", "threshold": 10**9}


def lifecycle(n: int) -> float:
    """Time ``n`` pools that each run one trivial task and are shut down with wait."""
    start = _common.clock()
    for _ in range(n):
        pool = ThreadPoolExecutor(1)
        pool.submit(int)
        pool.shutdown()
    return _common.clock() - start


def tight(n: int) -> float:
    """Time ``n`` pools created and shut down without any task (no thread starts)."""
    start = _common.clock()
    for _ in range(n):
        pool = ThreadPoolExecutor(1)
        pool.shutdown()
    return _common.clock() - start


def submits(n: int) -> float:
    """Time ``n`` ``submit(int)`` calls on one warm pool, up to the last result.

    The pool is created (and its worker started) before the clock starts, under
    the guard when one is installed, and shut down after the clock stops.
    """
    pool = ThreadPoolExecutor(1)
    pool.submit(int).result()
    start = _common.clock()
    future = None
    for _ in range(n):
        future = pool.submit(int)
    assert future is not None
    future.result()
    elapsed = _common.clock() - start
    pool.shutdown()
    return elapsed


def guarded_round(body: Callable[[int], float], n: int) -> Callable[[], float]:
    """A round of ``body`` with the guard installed around it (install/uninstall untimed)."""

    def run() -> float:
        executor_guard.install(**GUARD_OPTIONS)
        try:
            return body(n)
        finally:
            executor_guard.uninstall()

    return run


def plain_round(body: Callable[[int], float], n: int) -> Callable[[], float]:
    """A round of ``body`` with the original, unpatched classes."""
    return lambda: body(n)


def measure(
    key: str,
    title: str,
    body: Callable[[int], float],
    per_round: int,
    rounds: int,
    limit: float,
    unit: str,
) -> dict[str, Any]:
    """Interleave guarded/unguarded rounds of ``body``; judge the median per-round ratio."""
    _common.progress(f"{key}: {rounds} rounds x {per_round} {unit} each side")
    g_round = guarded_round(body, per_round)
    u_round = plain_round(body, per_round)
    g_round()  # warm-up: the site gets past STACK_FIRST, caches fill
    u_round()
    g_times, u_times = _common.interleave(g_round, u_round, rounds)
    stats = _common.ratios(g_times, u_times)
    g_each = sorted(g_times)[len(g_times) // 2] / per_round
    u_each = sorted(u_times)[len(u_times) // 2] / per_round
    return _common.result(
        key,
        title,
        guarded=_common.fmt_time(g_each) + f" / {unit}",
        unguarded=_common.fmt_time(u_each) + f" / {unit}",
        value=stats["ratio"],
        value_text=f"{stats['ratio']:.3f}× (min {stats['ratio_min']:.3f}×)",
        limit_text=f"≤ {limit:.2f}×",
        passed=stats["ratio"] <= limit,
        detail={
            **stats,
            "rounds": rounds,
            "per_round": per_round,
            "guarded_median_s": g_each,
            "unguarded_median_s": u_each,
            "added_per_op_s": g_each - u_each,
            "guarded_rounds_s": g_times,
            "unguarded_rounds_s": u_times,
        },
    )


def main() -> None:
    """Run the three hot-path benchmarks and emit their JSON."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    scale = 3 if args.quick else 1
    results = [
        measure(
            "lifecycle",
            "Lifecycle: ThreadPoolExecutor(1) + submit(int) + shutdown()",
            lifecycle,
            per_round=20,
            rounds=600 // scale,
            limit=1.05,
            unit="pool",
        ),
        measure(
            "tight",
            "Tight loop: ThreadPoolExecutor(1) + shutdown(), no task",
            tight,
            per_round=2000,
            rounds=150 // scale,
            limit=2.0,
            unit="pool",
        ),
        measure(
            "submit",
            "submit(int) on a long-lived pool created under the guard",
            submits,
            per_round=2000,
            rounds=150 // scale,
            limit=1.02,
            unit="task",
        ),
    ]
    _common.emit("bench_micro", results, args.out)


if __name__ == "__main__":
    main()
