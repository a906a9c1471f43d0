"""Whole-program benchmark (target 6): ``workload.py`` under the launcher and under tracemalloc.

The same script runs as a separate process three ways:

* ``python workload.py`` — the baseline;
* ``python -m executor_guard -q workload.py`` — the launcher, default options
  (mode ``warn``, threshold 10: the churning site does cross the threshold, so
  the run includes one warning, as a real run would);
* ``python -X tracemalloc=25 workload.py`` — the usual alternative for finding
  where objects come from, for scale.

The three variants rotate round by round (ABC, BCA, CAB, …) so that drift on a
shared machine hits them alike; each run's wall time covers the whole process,
start-up and exit included. Reported: the median per-round ratio of each
variant to plain ``python``, and the median wall times. There is no pass/fail
target here; the point is the order of magnitude next to tracemalloc.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from typing import Any

import _common

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "workload.py")


def variants() -> dict[str, list[str]]:
    """The three command lines, by name."""
    return {
        "plain": [sys.executable, SCRIPT],
        "guard": [sys.executable, "-m", "executor_guard", "-q", SCRIPT],
        "tracemalloc": [sys.executable, "-X", "tracemalloc=25", SCRIPT],
    }


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall time of one run and its stdout (which must be the checksum line)."""
    start = _common.clock()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = _common.clock() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, done.stdout.strip()


def main() -> None:
    """Run the rotating rounds and emit two results (guard and tracemalloc vs plain)."""
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    rounds = 3 if args.quick else 7
    env = {  # no PYTHONDONTWRITEBYTECODE: load .pyc files as a real installation does
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EXECUTOR_GUARD") and k != "PYTHONDONTWRITEBYTECODE"
    }
    commands = variants()
    names = list(commands)
    _common.progress(f"whole program: {rounds} rounds of {', '.join(names)}")
    for name in names:  # warm-up: page cache, .pyc files
        run_once(commands[name], env)
    times: dict[str, list[float]] = {name: [] for name in names}
    outputs: set[str] = set()
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            elapsed, output = run_once(commands[name], env)
            times[name].append(elapsed)
            outputs.add(output)
    if len(outputs) != 1:
        raise RuntimeError(f"the variants did different work: {outputs}")
    (output_line,) = outputs
    plain = times["plain"]
    results: list[dict[str, Any]] = []
    for name, title in (
        ("guard", "Whole program: python -m executor_guard -q workload.py vs python workload.py"),
        (
            "tracemalloc",
            "Whole program: python -X tracemalloc=25 workload.py vs python workload.py",
        ),
    ):
        stats = _common.ratios(times[name], plain)
        results.append(
            _common.result(
                f"workload_{name}",
                title,
                guarded=_common.fmt_time(statistics.median(times[name])),
                unguarded=_common.fmt_time(statistics.median(plain)),
                value=stats["ratio"],
                value_text=f"{stats['ratio']:.3f}× (min {stats['ratio_min']:.3f}×)",
                limit_text="reported",
                passed=None,
                detail={
                    **stats,
                    "rounds": rounds,
                    "output": output_line,
                    "runs_s": times[name],
                    "plain_runs_s": plain,
                },
            )
        )
    _common.emit("bench_workload", results, args.out)


if __name__ == "__main__":
    main()
