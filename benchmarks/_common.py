"""Shared helpers for the benchmark scripts: interleaved timing, statistics, JSON output.

The machine these run on is small (2 cores) and shared, so absolute times drift
by tens of percent from one minute to the next. Every comparison here is
therefore made *side by side in one run*: the guarded and the unguarded variant
alternate round by round (ABBA order, so neither side is always first after a
pause), and the verdict is the median of the per-round ratios, each of which
compares two measurements taken a few milliseconds apart. The ratio of the
fastest rounds (``min``) is reported alongside as the low-noise floor.

Each benchmark script writes one JSON document::

    {"python": "3.13.0", "script": "bench_micro", "results": [<result>, ...]}

where a result is the dict built by :func:`result` (see its docstring); the
driver ``run.py`` merges these documents and renders ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

#: The timer for everything: monotonic, highest resolution available.
clock = time.perf_counter


def interleave(
    guarded: Callable[[], float],
    unguarded: Callable[[], float],
    rounds: int,
    *,
    collect: bool = True,
) -> tuple[list[float], list[float]]:
    """Run ``rounds`` pairs of the two callables in ABBA order; return their results.

    Each callable performs one timed round and returns its duration (or any
    per-round figure). ``gc.collect()`` runs before every round, outside the
    timed section, so that neither side pays for the other's garbage.
    """
    g_times: list[float] = []
    u_times: list[float] = []
    for index in range(rounds):
        order = (guarded, unguarded) if index % 2 == 0 else (unguarded, guarded)
        for function in order:
            if collect:
                gc.collect()
            value = function()
            (g_times if function is guarded else u_times).append(value)
    return g_times, u_times


def ratios(g_times: list[float], u_times: list[float]) -> dict[str, float]:
    """Median of per-round ratios, ratio of the minima, and ratio of the medians."""
    per_round = [g / u for g, u in zip(g_times, u_times) if u > 0]
    return {
        "ratio": statistics.median(per_round),
        "ratio_min": min(g_times) / min(u_times),
        "ratio_of_medians": statistics.median(g_times) / statistics.median(u_times),
        "ratio_p25": _quantile(per_round, 0.25),
        "ratio_p75": _quantile(per_round, 0.75),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def result(
    key: str,
    title: str,
    *,
    guarded: str,
    unguarded: str,
    value: Optional[float],
    value_text: str,
    limit_text: str,
    passed: Optional[bool],
    detail: Optional[dict[str, Any]] = None,
    note: str = "",
) -> dict[str, Any]:
    """One row of RESULTS.md for one Python.

    ``guarded``/``unguarded`` are the two sides as display text, ``value`` the
    figure judged against the target (a ratio, bytes, milliseconds…) with its
    display text, ``limit_text`` the target (``"≤ 1.05×"``), ``passed`` the
    verdict (``None``: could not be measured here, see ``note``), ``detail``
    anything else worth keeping in the JSON (raw per-round figures).
    """
    return {
        "key": key,
        "title": title,
        "guarded": guarded,
        "unguarded": unguarded,
        "value": value,
        "value_text": value_text,
        "limit_text": limit_text,
        "passed": passed,
        "note": note,
        "detail": detail or {},
    }


def fmt_time(seconds: float) -> str:
    """``12.3 µs`` / ``4.56 ms`` / ``1.23 s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def fmt_bytes(n: float) -> str:
    """``512 B`` / ``12.3 KiB`` / ``4.56 MiB`` (signed)."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1024:
        return f"{sign}{n:.0f} B"
    if n < 1024 * 1024:
        return f"{sign}{n / 1024:.1f} KiB"
    return f"{sign}{n / (1024 * 1024):.2f} MiB"


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--out FILE`` and ``--quick``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", help="write the JSON document here (default: stdout)")
    p.add_argument("--quick", action="store_true", help="fewer rounds / smaller sizes")
    return p


def emit(script: str, results: list[dict[str, Any]], out: Optional[str]) -> None:
    """Write the script's JSON document to ``out`` (or stdout)."""
    document = {
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "executable": sys.executable,
        "script": script,
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        print(text)


def progress(message: str) -> None:
    """A progress line on stderr (the driver passes it through)."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


#: cachegrind's simulated caches (an x86 core's L1s, a 2 MiB last level): fixed, so the
#: figures are the same on any machine.
CACHES = ("--I1=32768,8,64", "--D1=32768,8,64", "--LL=2097152,16,64")


def cachegrind(argv: list[str], env: dict[str, str], caches: bool = False) -> dict[str, int]:
    """cachegrind's totals for ``argv``: ``I`` (instructions); with ``caches``, ``LLi``/``LLd``."""
    options = ["--cache-sim=yes", *CACHES] if caches else ["--cache-sim=no"]
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", *options, "--cachegrind-out-file=/dev/null", *argv],
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
