"""Instructions per pool in the tight loop, counted by valgrind: target 2 without the noise.

Wall-clock ratios on a shared 2-core machine wander by several percent; the
number of machine instructions a loop executes does not. This counts them
with ``valgrind --tool=cachegrind`` for ``ThreadPoolExecutor(1)`` +
``shutdown()``: each variant runs as a process doing N = 2,000 pools after a
warm-up and again with N = 0, and the difference divided by N is that
variant's instructions per pool (start-up, imports and warm-up cancel out).

Variants: no guard, the guard with the hooks this install uses, and (when those
are the C hooks) the pure-Python hooks. Instructions are a proxy for time, not
a measure of it (memory stalls and branch misses are not counted), so this is
reported next to target 2, not judged. "Not available" without valgrind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

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


def measure(key: str, title: str, env: dict[str, str], bare: float, hooks: str) -> dict[str, Any]:
    _common.progress(f"{key}: valgrind, {N:,} pools ({hooks} hooks)")
    guarded = per_pool("guarded", env)
    ratio = guarded / bare
    return _common.result(
        key,
        title,
        guarded=f"{guarded:,.0f} instructions / pool",
        unguarded=f"{bare:,.0f} instructions / pool",
        value=ratio,
        value_text=f"{ratio:.3f}× (+{guarded - bare:,.0f} instructions; {hooks} hooks)",
        limit_text="reported (target 2 is ≤ 2.0× in time)",
        passed=None,
        detail={"guarded": guarded, "bare": bare, "pools": N, "hooks": hooks},
    )


def main() -> None:
    """Count the variants and emit their JSON (``not available`` without valgrind)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    # --quick changes nothing: six short processes under valgrind are quick already.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    results: list[dict[str, Any]] = []
    if shutil.which("valgrind") is None:
        results.append(
            _common.result(
                "tight_instructions",
                "Tight loop, instructions per pool (valgrind)",
                guarded="—",
                unguarded="—",
                value=None,
                value_text="not available (no valgrind)",
                limit_text="reported",
                passed=None,
            )
        )
        _common.emit("bench_instructions", results, args.out)
        return
    from executor_guard import _guard

    c_hooks = _guard.speedups_active()
    bare = per_pool("bare", env)
    results.append(
        measure(
            "tight_instructions",
            "Tight loop, instructions per pool (valgrind)",
            env,
            bare,
            "C" if c_hooks else "pure-Python",
        )
    )
    if c_hooks:
        pure = dict(env, EXECUTOR_GUARD_PURE_PYTHON="1")
        results.append(
            measure(
                "tight_instructions_python",
                "Tight loop, instructions per pool (valgrind), pure-Python hooks",
                pure,
                bare,
                "pure-Python",
            )
        )
    _common.emit("bench_instructions", results, args.out)


if __name__ == "__main__":
    main()
