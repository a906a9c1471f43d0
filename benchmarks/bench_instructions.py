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
import re
import shutil
import subprocess
import sys

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

#: Simulated caches for the cold loop: fixed, so the figure is the same on any machine.
CACHES = ("--I1=32768,8,64", "--D1=32768,8,64", "--LL=2097152,16,64")


def counts(loop: str, variant: str, n: int, env: dict[str, str], caches: bool) -> dict[str, int]:
    """cachegrind's totals for ``loop`` run as ``variant`` with ``n`` pools."""
    options = ["--cache-sim=yes", *CACHES] if caches else ["--cache-sim=no"]
    out = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            *options,
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            loop,
            variant,
            str(n),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = {}
    for name, label in (("I", r"I\s+refs"), ("LLi", r"LLi\s+misses"), ("LLd", r"LLd\s+misses")):
        match = re.search(label + r":\s+([\d,]+)", out.stderr)
        if match is not None:
            found[name] = int(match.group(1).replace(",", ""))
    if "I" not in found or (caches and len(found) < 3):
        raise RuntimeError("no counts in valgrind's output:\n" + out.stderr[-2000:])
    return found


def per_pool(variant: str, env: dict[str, str]) -> float:
    """Instructions per pool: (N pools − 0 pools) ÷ N."""
    many = counts(LOOP, variant, N, env, caches=False)
    none = counts(LOOP, variant, 0, env, caches=False)
    return (many["I"] - none["I"]) / N


def cold_misses(variant: str, env: dict[str, str]) -> tuple[float, float]:
    """Last-level (instruction, data) misses per iteration of the cold loop."""
    many = counts(COLD_LOOP, variant, N_COLD, env, caches=True)
    none = counts(COLD_LOOP, variant, 0, env, caches=True)
    return ((many["LLi"] - none["LLi"]) / N_COLD, (many["LLd"] - none["LLd"]) / N_COLD)


def cold_pool_misses(env: dict[str, str]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per-pool (instruction, data) misses, bare and guarded, net of the scan itself."""
    scan_i, scan_d = cold_misses("scan", env)
    bare_i, bare_d = cold_misses("bare", env)
    guarded_i, guarded_d = cold_misses("guarded", env)
    return (bare_i - scan_i, bare_d - scan_d), (guarded_i - scan_i, guarded_d - scan_d)


def main() -> None:
    """Count both variants and emit their JSON (``not available`` without valgrind)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    # --quick changes nothing: four short processes under valgrind are quick already.
    # A fixed hash seed: the counts are then the same from one run to the next.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    env["PYTHONHASHSEED"] = "0"
    key = "tight_instructions"
    title = "Tight loop, instructions per pool (valgrind)"
    cold_key = "cold_misses"
    cold_title = "Tight loop with evicted caches, last-level misses per pool (cachegrind)"
    if shutil.which("valgrind") is None:
        results = [
            _common.result(
                name,
                heading,
                guarded="—",
                unguarded="—",
                value=None,
                value_text="not available (no valgrind)",
                limit_text="reported",
                passed=None,
            )
            for name, heading in ((key, title), (cold_key, cold_title))
        ]
    else:
        _common.progress(f"{key}: valgrind, {N:,} pools, without and with the guard")
        bare = per_pool("bare", env)
        guarded = per_pool("guarded", env)
        ratio = guarded / bare
        result = _common.result(
            key,
            title,
            guarded=f"{guarded:,.0f} instructions / pool",
            unguarded=f"{bare:,.0f} instructions / pool",
            value=ratio,
            value_text=f"{ratio:.3f}× (+{guarded - bare:,.0f} instructions)",
            limit_text="reported (target 2 is ≤ 2.0× in time)",
            passed=None,
            detail={"guarded": guarded, "bare": bare, "pools": N},
        )
        _common.progress(f"{cold_key}: cachegrind, {N_COLD:,} pools with evicted caches")
        (bare_i, bare_d), (guarded_i, guarded_d) = cold_pool_misses(env)
        bare_total, guarded_total = bare_i + bare_d, guarded_i + guarded_d
        cold_ratio = guarded_total / bare_total
        cold = _common.result(
            cold_key,
            cold_title,
            guarded=f"{guarded_total:,.0f} misses / pool ({guarded_i:,.0f} instruction)",
            unguarded=f"{bare_total:,.0f} misses / pool ({bare_i:,.0f} instruction)",
            value=cold_ratio,
            value_text=f"{cold_ratio:.3f}× (+{guarded_total - bare_total:,.0f} misses)",
            limit_text="reported (what target 1 pays)",
            passed=None,
            detail={
                "guarded_instruction": guarded_i,
                "guarded_data": guarded_d,
                "bare_instruction": bare_i,
                "bare_data": bare_d,
                "pools": N_COLD,
            },
        )
        results = [result, cold]
    _common.emit("bench_instructions", results, args.out)


if __name__ == "__main__":
    main()
