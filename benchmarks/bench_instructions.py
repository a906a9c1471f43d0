"""Instructions per pool in the tight loop, counted by valgrind: target 2 without the noise.

Wall-clock ratios on a shared 2-core machine wander by several percent; the
number of machine instructions a loop executes does not. This counts them
with ``valgrind --tool=cachegrind`` for ``ThreadPoolExecutor(1)`` +
``shutdown()``: each variant runs as a process doing N = 2,000 pools after a
warm-up and again with N = 0, and the difference divided by N is that
variant's instructions per pool (start-up, imports and warm-up cancel out).

Variants: no guard, and the guard as installed. Instructions are a proxy for
time, not a measure of it (memory stalls and branch misses are not counted), so
this is reported next to target 2, not judged. "Not available" without valgrind.

A second figure (2c) counts what instructions miss: the same loop with the
caches evicted before each pool (a scan of 4 MiB, as a thread start and join
evict them in the lifecycle loop of target 1), under cachegrind's simulated
caches (32 KiB L1, 2 MiB last level), in last-level misses per pool,
instruction and data. In the lifecycle loop the guard costs several times what
it costs in the warm tight loop for the same instructions: its code and data
are cold there, so these misses, not the instruction count, are what target 1
measures. Reported, not judged.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import _common

N = 2000

#: Pools made before counting: past 3.9 and 3.10's threshold of 1,024 calls
#: before a function caches its global lookups (3.11+ specialise sooner).
WARM_UP = 1100

LOOP = f"""
import sys
from concurrent.futures import ThreadPoolExecutor
if sys.argv[1] != "bare":
    import executor_guard
    executor_guard.install(mode="log", threshold=10**9)
def one():
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
for _ in range({WARM_UP}):
    one()
for _ in range(int(sys.argv[2])):
    one()
"""


#: Pools in the cold-cache loop (each one scans 4 MiB under simulation: slow).
N_COLD = 300

COLD_LOOP = f"""
import sys
from concurrent.futures import ThreadPoolExecutor
if sys.argv[1] == "guarded":
    import executor_guard
    executor_guard.install(mode="log", threshold=10**9)
junk = bytearray(4 << 20)
def make():
    if sys.argv[1] != "scan":
        pool = ThreadPoolExecutor(1)
        pool.shutdown()
def one():
    junk.find(1)  # evicts the caches
    make()
for _ in range({WARM_UP}):
    make()
for _ in range(int(sys.argv[2])):
    one()
"""


def counts(loop: str, variant: str, n: int, env: dict[str, str], caches: bool) -> dict[str, int]:
    """cachegrind's totals for ``loop`` run as ``variant`` with ``n`` pools."""
    return _common.cachegrind([sys.executable, "-c", loop, variant, str(n)], env, caches)


def net(loop: str, variant: str, n: int, env: dict[str, str], caches: bool) -> dict[str, float]:
    """Each count per pool: (``n`` pools − 0 pools) ÷ ``n``."""
    many = counts(loop, variant, n, env, caches)
    none = counts(loop, variant, 0, env, caches)
    return {name: (many[name] - none[name]) / n for name in many}


#: The cold loop's variants: the scan alone, then a bare pool, then a guarded one.
VARIANTS = ("scan", "bare", "guarded")


def cold_pool_misses(env: dict[str, str]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per-pool (instruction, data) misses, bare and guarded, net of the scan itself."""
    scan, bare, guarded = (net(COLD_LOOP, v, N_COLD, env, True) for v in VARIANTS)
    return (
        (bare["LLi"] - scan["LLi"], bare["LLd"] - scan["LLd"]),
        (guarded["LLi"] - scan["LLi"], guarded["LLd"] - scan["LLd"]),
    )


def reported(
    key: str,
    unit: str,
    figures: tuple[float, float],
    limit_text: str,
    detail: dict[str, Any],
    notes: tuple[str, str] = ("", ""),
) -> dict[str, Any]:
    """A reported (never judged) figure: ``figures`` is (bare, guarded) per pool."""
    bare, guarded = figures
    ratio = guarded / bare
    return _common.result(
        key,
        TITLES[key],
        guarded=f"{guarded:,.0f} {unit} / pool{notes[1]}",
        unguarded=f"{bare:,.0f} {unit} / pool{notes[0]}",
        value=ratio,
        value_text=f"{ratio:.3f}× (+{guarded - bare:,.0f} {unit})",
        limit_text=limit_text,
        passed=None,
        detail=detail,
    )


TITLES = {
    "tight_instructions": "Tight loop, instructions per pool (valgrind)",
    "cold_misses": "Tight loop with evicted caches, last-level misses per pool (cachegrind)",
}


def main() -> None:
    """Count both variants and emit their JSON (``not available`` without valgrind)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    # --quick changes nothing: short processes under valgrind are quick already.
    # A fixed hash seed: the counts are then the same from one run to the next.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    env["PYTHONHASHSEED"] = "0"
    if shutil.which("valgrind") is None:
        results = [
            _common.result(
                key,
                title,
                guarded="—",
                unguarded="—",
                value=None,
                value_text="not available (no valgrind)",
                limit_text="reported",
                passed=None,
            )
            for key, title in TITLES.items()
        ]
        _common.emit("bench_instructions", results, args.out)
        return
    _common.progress(f"tight_instructions: valgrind, {N:,} pools, without and with the guard")
    bare = net(LOOP, "bare", N, env, False)["I"]
    guarded = net(LOOP, "guarded", N, env, False)["I"]
    instructions = reported(
        "tight_instructions",
        "instructions",
        (bare, guarded),
        "reported (target 2 is ≤ 2.0× in time)",
        {"guarded": guarded, "bare": bare, "pools": N},
    )
    _common.progress(f"cold_misses: cachegrind, {N_COLD:,} pools with evicted caches")
    (bare_i, bare_d), (guarded_i, guarded_d) = cold_pool_misses(env)
    cold = reported(
        "cold_misses",
        "misses",
        (bare_i + bare_d, guarded_i + guarded_d),
        "reported (what target 1 pays)",
        {
            "guarded_instruction": guarded_i,
            "guarded_data": guarded_d,
            "bare_instruction": bare_i,
            "bare_data": bare_d,
            "pools": N_COLD,
        },
        notes=(f" ({bare_i:,.0f} instruction)", f" ({guarded_i:,.0f} instruction)"),
    )
    _common.emit("bench_instructions", [instructions, cold], args.out)


if __name__ == "__main__":
    main()
