"""cProfile of the guarded hot path, for explaining a missed micro-benchmark target.

Runs the tight loop (``ThreadPoolExecutor(1)`` + ``shutdown()``) and the
lifecycle loop (plus one ``submit(int)``) under the guard with ``cProfile`` and
reports, per loop, the functions with the most own time and how much of the
total is spent in executor_guard's code (its package files and generated
wrappers) versus ``concurrent.futures``/``threading`` and the rest.

cProfile inflates the cost of small Python functions, so the shares are a
guide to *where* the time goes, not a measurement of *how much*; the ratios in
RESULTS.md come from the unprofiled interleaved runs.
"""

from __future__ import annotations

import cProfile
import os
import pstats
from typing import Any

import _common
import bench_micro

import executor_guard

_PACKAGE_DIR = os.path.dirname(os.path.abspath(executor_guard.__file__))


def owner(filename: str) -> str:
    """Which body of code a profiled function belongs to."""
    if filename.startswith(_PACKAGE_DIR) or filename.startswith("<executor_guard"):
        return "executor_guard"
    if os.sep + "concurrent" + os.sep in filename:
        return "concurrent.futures"
    if filename.endswith(os.sep + "threading.py"):
        return "threading"
    if filename == "~":
        return "builtins"
    return "other"


def short(filename: str) -> str:
    """A readable file name: package-relative for executor_guard, basename otherwise."""
    if filename.startswith(_PACKAGE_DIR):
        return "executor_guard/" + os.path.relpath(filename, _PACKAGE_DIR)
    return os.path.basename(filename) if filename != "~" else ""


def profile(name: str, body: Any, n: int, top: int = 12) -> dict[str, Any]:
    """Profile ``body(n)`` under the guard; top functions by own time and shares by owner."""
    executor_guard.install(**bench_micro.GUARD_OPTIONS)
    try:
        body(min(n, 200))  # warm-up: steady-state site
        profiler = cProfile.Profile()
        profiler.enable()
        body(n)
        profiler.disable()
    finally:
        executor_guard.uninstall()
        executor_guard.reset()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    shares: dict[str, float] = {}
    rows = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        shares[owner(filename)] = shares.get(owner(filename), 0.0) + tottime
        rows.append(
            {
                "function": f"{short(filename)}:{line}({function})" if line else function,
                "calls": calls,
                "tottime_per_pool_us": tottime / n * 1e6,
                "cumtime_per_pool_us": cumtime / n * 1e6,
                "share": tottime / total,
            }
        )
    rows.sort(key=lambda row: row["tottime_per_pool_us"], reverse=True)
    return {
        "loop": name,
        "pools": n,
        "profiled_us_per_pool": total / n * 1e6,
        "shares": {
            key: value / total for key, value in sorted(shares.items(), key=lambda kv: -kv[1])
        },
        "top": rows[:top],
    }


def main() -> None:
    """Profile both loops and emit a JSON document (``results`` holds the profiles)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    profiles = [
        profile("tight", bench_micro.tight, 5_000 if args.quick else 20_000),
        profile("lifecycle", bench_micro.lifecycle, 500 if args.quick else 2_000),
    ]
    _common.emit("profile_hot_path", profiles, args.out)


if __name__ == "__main__":
    main()
