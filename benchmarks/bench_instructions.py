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
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import _common

N = 2000

LOOP = """
import sys
from concurrent.futures import ThreadPoolExecutor
if sys.argv[1] != "bare":
    import executor_guard
    executor_guard.install(mode="log", threshold=10**9)
def one():
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
for _ in range(300):
    one()
for _ in range(int(sys.argv[2])):
    one()
"""


def instructions(variant: str, n: int, env: dict[str, str]) -> int:
    """Instructions valgrind counts for the loop process of ``variant`` with ``n`` pools."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            LOOP,
            variant,
            str(n),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError("no instruction count in valgrind's output:\n" + out.stderr[-2000:])
    return int(match.group(1).replace(",", ""))


def per_pool(variant: str, env: dict[str, str]) -> float:
    """Instructions per pool: (N pools − 0 pools) ÷ N."""
    return (instructions(variant, N, env) - instructions(variant, 0, env)) / N


def main() -> None:
    """Count both variants and emit their JSON (``not available`` without valgrind)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    # --quick changes nothing: four short processes under valgrind are quick already.
    # A fixed hash seed: the counts are then the same from one run to the next.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    env["PYTHONHASHSEED"] = "0"
    key = "tight_instructions"
    title = "Tight loop, instructions per pool (valgrind)"
    if shutil.which("valgrind") is None:
        result = _common.result(
            key,
            title,
            guarded="—",
            unguarded="—",
            value=None,
            value_text="not available (no valgrind)",
            limit_text="reported",
            passed=None,
        )
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
    _common.emit("bench_instructions", [result], args.out)


if __name__ == "__main__":
    main()
