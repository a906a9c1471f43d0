"""Memory benchmarks (target 5): the guard's own memory stays bounded.

a. **Growth at one call site** — one line creates and shuts down pools over and
   over (the incident pattern). The guard keeps per-site statistics, not
   per-pool history, so its memory must not grow with the number of creations:
   at most 64 KiB more after 1,000,000 creations than after 10,000 (``--quick``:
   100,000). Measured with ``tracemalloc`` (one frame per trace), counting only
   allocations made by executor_guard's own code (its package files and its
   generated wrappers); the total traced growth of the whole process is
   reported next to it.
b. **Per live pool** — a pool that is open costs a record (a slotted weak
   reference) and an entry in the table of live records. 10,000 open pools are
   created without the guard, then with it; the difference of the traced
   totals, divided by 10,000, must be at most 256 bytes per pool.
c. **Distinct call sites** — 12,000 distinct sites generated with
   ``exec(compile(...))`` (each its own file name): the registry must stop at
   ``MAX_SITES`` sites and count the creations beyond as
   ``totals.overflow_creations``; the guard's memory after the cap is reached
   should stay flat (reported, not judged).
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common

import executor_guard
from executor_guard import _registry

GUARD_OPTIONS: dict[str, Any] = {"mode": "log", "threshold": 10**9}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(executor_guard.__file__))
#: Allocations attributed to executor_guard: its files and its generated wrappers.
GUARD_FILTERS = [
    tracemalloc.Filter(True, os.path.join(_PACKAGE_DIR, "*")),
    tracemalloc.Filter(True, "<executor_guard*"),
]


def guard_bytes() -> int:
    """Bytes currently traced to executor_guard's own code."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(GUARD_FILTERS)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def traced_bytes() -> int:
    """Bytes currently traced in the whole process."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def churn(n: int) -> None:
    """Create and shut down ``n`` pools, all at the same call site."""
    for _ in range(n):
        pool = ThreadPoolExecutor(1)
        pool.shutdown()


def growth(total: int, first: int = 10_000, limit: int = 64 * 1024) -> dict[str, Any]:
    """Target 5a: guard memory after ``total`` creations minus after ``first``."""
    _common.progress(f"memory growth: {first:,} then {total:,} creations at one site")
    executor_guard.reset()
    executor_guard.install(**GUARD_OPTIONS)
    tracemalloc.start(1)
    try:
        start = _common.clock()
        churn(first)
        g_first, t_first = guard_bytes(), traced_bytes()
        churn(total - first)
        elapsed = _common.clock() - start
        g_total, t_total = guard_bytes(), traced_bytes()
        pools = executor_guard.report().to_dict()["totals"]["pools"]
    finally:
        tracemalloc.stop()
        executor_guard.uninstall()
        executor_guard.reset()
    grown = g_total - g_first
    return _common.result(
        "memory_growth",
        f"Guard memory growth, {first:,} → {total:,} creations at one call site",
        guarded=f"{_common.fmt_bytes(g_total)} after {total:,}",
        unguarded=f"{_common.fmt_bytes(g_first)} after {first:,}",
        value=grown,
        value_text=(
            f"{_common.fmt_bytes(grown)} (whole process: {_common.fmt_bytes(t_total - t_first)})"
        ),
        limit_text=f"≤ {_common.fmt_bytes(limit)}",
        passed=grown <= limit and pools == total,
        detail={
            "first": first,
            "total": total,
            "guard_bytes_first": g_first,
            "guard_bytes_total": g_total,
            "traced_bytes_first": t_first,
            "traced_bytes_total": t_total,
            "pools_reported": pools,
            "seconds_with_tracemalloc": elapsed,
        },
    )


def live_pools(n: int = 10_000, limit: float = 256.0) -> dict[str, Any]:
    """Target 5b: traced bytes of ``n`` open pools with the guard minus without."""
    _common.progress(f"memory per live pool: {n:,} open pools, without then with the guard")

    def open_pools() -> tuple[int, int]:
        """Traced growth (whole process, guard-attributed) of ``n`` open pools."""
        tracemalloc.start(1)
        try:
            base, base_guard = traced_bytes(), guard_bytes()
            pools = [ThreadPoolExecutor(1) for _ in range(n)]
            grown, grown_guard = traced_bytes() - base, guard_bytes() - base_guard
        finally:
            tracemalloc.stop()
        for pool in pools:
            pool.shutdown()
        del pools
        gc.collect()
        return grown, grown_guard

    open_pools()  # warm-up: first-use caches of both sides, free lists
    executor_guard.install(**GUARD_OPTIONS)
    open_pools()
    executor_guard.uninstall()
    executor_guard.reset()

    plain, _ = open_pools()
    executor_guard.install(**GUARD_OPTIONS)
    try:
        # Records of the warm-up's collected pools wait in the queue for the
        # next batch: apply it, so that only this round's records are counted.
        _registry.drain()
        live_before = _registry.live_records()
        tracemalloc.start(1)
        base, base_guard = traced_bytes(), guard_bytes()
        pools = [ThreadPoolExecutor(1) for _ in range(n)]
        guarded, guarded_guard = traced_bytes() - base, guard_bytes() - base_guard
        tracemalloc.stop()
        live = _registry.live_records() - live_before
        for pool in pools:
            pool.shutdown()
        del pools
    finally:
        executor_guard.uninstall()
        executor_guard.reset()
    per_pool = (guarded - plain) / n
    return _common.result(
        "memory_per_pool",
        f"Guard memory per live pool ({n:,} open pools)",
        guarded=f"{_common.fmt_bytes(guarded)} ({guarded / n:.0f} B/pool)",
        unguarded=f"{_common.fmt_bytes(plain)} ({plain / n:.0f} B/pool)",
        value=per_pool,
        value_text=f"{per_pool:.0f} B/pool (guard's files: {guarded_guard / n:.0f} B/pool)",
        limit_text=f"≤ {limit:.0f} B/pool",
        passed=per_pool <= limit and live == n,
        detail={
            "pools": n,
            "live_records_added": live,
            "traced_guarded": guarded,
            "traced_unguarded": plain,
            "guard_files_bytes": guarded_guard,
        },
    )


SITE_SOURCE = "pool = ThreadPoolExecutor(1)\npool.shutdown()\n"


def distinct_sites(n: int = 12_000) -> dict[str, Any]:
    """Target 5c: ``n`` distinct call sites; the registry stops at MAX_SITES."""
    cap = _registry.MAX_SITES
    _common.progress(f"distinct call sites: {n:,} generated sites, cap {cap:,}")
    codes = [compile(SITE_SOURCE, f"<benchmark site {i}>", "exec") for i in range(n)]
    namespace: dict[str, Any] = {"ThreadPoolExecutor": ThreadPoolExecutor}
    tracemalloc.start(1)
    try:
        with executor_guard.guarded(**GUARD_OPTIONS) as guard:
            for code in codes[:cap]:
                exec(code, namespace)
            at_cap = guard_bytes()
            for code in codes[cap:]:
                exec(code, namespace)
            at_end = guard_bytes()
            totals = guard.report().to_dict()["totals"]
    finally:
        tracemalloc.stop()
    expected_overflow = n - cap
    ok = totals["sites"] == cap and totals["overflow_creations"] == expected_overflow
    return _common.result(
        "distinct_sites",
        f"Distinct call sites: {n:,} generated sites against MAX_SITES = {cap:,}",
        guarded=f"sites {totals['sites']:,}, overflow {totals['overflow_creations']:,}",
        unguarded=f"expected sites {cap:,}, overflow {expected_overflow:,}",
        value=float(totals["sites"]),
        value_text=(
            f"capped at {totals['sites']:,}; guard memory {_common.fmt_bytes(at_cap)} at the cap, "
            f"{_common.fmt_bytes(at_end - at_cap)} after {expected_overflow:,} more sites"
        ),
        limit_text=f"sites = {cap:,}, rest counted",
        passed=ok,
        detail={
            "generated": n,
            "max_sites": cap,
            "totals": totals,
            "guard_bytes_at_cap": at_cap,
            "guard_bytes_at_end": at_end,
        },
    )


def main() -> None:
    """Run the three memory benchmarks and emit their JSON."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    results = [
        growth(total=100_000 if args.quick else 1_000_000),
        live_pools(),
        distinct_sites(),
    ]
    _common.emit("bench_memory", results, args.out)


if __name__ == "__main__":
    main()
