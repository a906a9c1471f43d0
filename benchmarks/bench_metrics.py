"""Metrics on vs off (issue 17): the hot path must not change when ``metrics="otel"`` is on.

Metrics cannot be switched off again in a process once their instruments are
registered, so the variants run in separate processes, rotated (ABC, BCA,
CAB) so that drift lands on each in turn. Within each process the guarded
tight loop (2,000 × ``ThreadPoolExecutor(1)`` + ``shutdown()`` per round)
alternates round by round with the same loop on the unpatched classes (ABBA,
``_common.interleave``); a process's figure is the median of its per-round
ratios guarded ÷ bare, and the verdict compares those figures across variants:

* **off**: ``install(mode="log", threshold=10**9)``; OpenTelemetry never imported;
* **on, SDK**: the same with ``metrics="otel"`` and a real SDK ``MeterProvider``
  whose ``PeriodicExportingMetricReader`` collects every 100 ms (600× more
  often than the SDK's default minute) into a discarding exporter, so
  collections run in the SDK's thread *during* the timed rounds;
* **on, no provider**: ``metrics="otel"`` with no provider set (the API's proxy);
* **SDK, metrics off**: the "on, SDK" process without ``metrics="otel"``: what
  the host's own SDK and its reader thread cost, with none of ours.

Target: on ÷ off ≤ 1.05 (the median per-round ratio of "on, SDK" over that of
"off"). One collection's own cost (in the reader's thread, not the hot path)
is shown for 1 and for 256 sites.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common

import executor_guard

VARIANTS = ("off", "on", "noop", "sdk")
TITLES = {
    "off": "metrics off",
    "on": "metrics on, SDK collecting every 100 ms",
    "noop": "metrics on, no provider",
    "sdk": "metrics off, SDK collecting every 100 ms (the host's own cost)",
}
GUARD_OPTIONS: dict[str, Any] = {"mode": "log", "threshold": 10**9}
PER_ROUND = 2000
LIMIT = 1.05


def tight(n: int) -> float:
    """Time ``n`` pools created and shut down without any task (no thread starts)."""
    start = _common.clock()
    for _ in range(n):
        pool = ThreadPoolExecutor(1)
        pool.shutdown()
    return _common.clock() - start


def child(variant: str, rounds: int) -> dict[str, Any]:
    """One process of one variant: guarded vs bare rounds, side by side."""
    options = dict(GUARD_OPTIONS)
    exports: list[int] = []
    if variant in ("on", "noop"):
        options["metrics"] = "otel"
    if variant in ("on", "sdk"):
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            MetricExporter,
            MetricExportResult,
            PeriodicExportingMetricReader,
        )

        class Discard(MetricExporter):
            def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kw: Any) -> Any:
                exports.append(1)
                return MetricExportResult.SUCCESS

            def force_flush(self, timeout_millis: float = 10_000) -> bool:
                return True

            def shutdown(self, timeout_millis: float = 30_000, **kw: Any) -> None:
                pass

        reader = PeriodicExportingMetricReader(Discard(), export_interval_millis=100)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    def guarded() -> float:
        executor_guard.install(**options)
        try:
            return tight(PER_ROUND)
        finally:
            executor_guard.uninstall()

    def bare() -> float:
        return tight(PER_ROUND)

    guarded()  # warm-up: the site past its first 16 stacks, caches filled
    bare()
    g_times, u_times = _common.interleave(guarded, bare, rounds)
    stats = _common.ratios(g_times, u_times)
    return {
        "variant": variant,
        "ratio": stats["ratio"],
        "guarded_each_s": statistics.median(g_times) / PER_ROUND,
        "bare_each_s": statistics.median(u_times) / PER_ROUND,
        "exports": len(exports),
        "opentelemetry_imported": "opentelemetry" in sys.modules,
    }


def collection_cost(sites: int, repeat: int = 50) -> float:
    """Median time of one ``collect()`` of the guard's instruments with ``sites`` sites."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from executor_guard import _metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench")
    with executor_guard.guarded(**GUARD_OPTIONS) as guard:
        for index in range(sites):
            code = compile("ThreadPoolExecutor(1).shutdown()\n", f"/svc/s{index}.py", "exec")
            exec(code, {"ThreadPoolExecutor": ThreadPoolExecutor})
    # The module's callbacks, registered on a private provider for this measurement.
    original = _metrics._guard_to_read
    _metrics._guard_to_read = lambda: guard
    try:
        meter.create_observable_counter("c", callbacks=[_metrics._observe_created])
        meter.create_observable_gauge("l", callbacks=[_metrics._observe_live])
        meter.create_observable_gauge("p", callbacks=[_metrics._observe_peak_live])
        meter.create_observable_gauge("w", callbacks=[_metrics._observe_with_findings])
        from opentelemetry.metrics import Observation

        _metrics._METRICS.observation = Observation
        times = []
        for _ in range(repeat):
            start = _common.clock()
            reader.get_metrics_data()
            times.append(_common.clock() - start)
    finally:
        _metrics._guard_to_read = original
        provider.shutdown()
    return statistics.median(times)


def main() -> None:
    """Run the variants in rotated processes and emit the JSON (or one child's figures)."""
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--variant", choices=VARIANTS, help=None)
    p.add_argument("--rounds", type=int, default=0)
    args = p.parse_args()
    rounds = args.rounds or (20 if args.quick else 60)
    if args.variant:
        print(json.dumps(child(args.variant, rounds)))
        return
    per_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    rotations = 2 if args.quick else len(VARIANTS)
    for rotation in range(rotations):
        order = VARIANTS[rotation % len(VARIANTS) :] + VARIANTS[: rotation % len(VARIANTS)]
        for variant in order:
            _common.progress(f"{TITLES[variant]}: {rounds} rounds x {PER_ROUND} pools each side")
            out = subprocess.run(
                [sys.executable, __file__, "--variant", variant, "--rounds", str(rounds)],
                capture_output=True,
                text=True,
                check=True,
            )
            per_variant[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    figures = {
        v: {
            "ratio": statistics.median(r["ratio"] for r in runs),
            "guarded_each_s": statistics.median(r["guarded_each_s"] for r in runs),
            "bare_each_s": statistics.median(r["bare_each_s"] for r in runs),
            "exports": sum(r["exports"] for r in runs),
            "opentelemetry_imported": any(r["opentelemetry_imported"] for r in runs),
        }
        for v, runs in per_variant.items()
    }
    on_off = figures["on"]["ratio"] / figures["off"]["ratio"]
    noop_off = figures["noop"]["ratio"] / figures["off"]["ratio"]
    on_sdk = figures["on"]["ratio"] / figures["sdk"]["ratio"]
    costs = {str(n): collection_cost(n) for n in (1, 256)}
    results = [
        _common.result(
            "metrics_on_off",
            "Tight loop with metrics on vs off: ThreadPoolExecutor(1) + shutdown()",
            guarded=f"{_common.fmt_time(figures['on']['guarded_each_s'])} / pool "
            f"({figures['on']['ratio']:.3f}× bare)",
            unguarded=f"{_common.fmt_time(figures['off']['guarded_each_s'])} / pool "
            f"({figures['off']['ratio']:.3f}× bare)",
            value=on_off,
            value_text=f"{on_off:.3f}× (no provider: {noop_off:.3f}×; "
            f"vs the same SDK without metrics: {on_sdk:.3f}×)",
            limit_text=f"≤ {LIMIT:.2f}×",
            passed=on_off <= LIMIT,
            detail={
                "variants": figures,
                "runs": per_variant,
                "collection_s": costs,
                "rounds": rounds,
                "per_round": PER_ROUND,
            },
            note=f"one collection: {_common.fmt_time(costs['1'])} (1 site), "
            f"{_common.fmt_time(costs['256'])} (256 sites), in the reader's thread",
        )
    ]
    _common.emit("bench_metrics", results, args.out)


if __name__ == "__main__":
    main()
