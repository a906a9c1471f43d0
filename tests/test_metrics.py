"""``metrics="otel"``: the registry's counts as OpenTelemetry instruments, with the real SDK.

An ``InMemoryMetricReader`` must see what the JSON report says; a provider
the host sets after the guard installed must still get the instruments; a
missing ``opentelemetry-api`` is one line; metrics off imports nothing of
OpenTelemetry; a failing read never reaches the SDK; cardinality is capped;
a forked child reads its own guard.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip(
    "opentelemetry.sdk.metrics",
    reason="opentelemetry-sdk is not installed (pip install 'executor-guard[test]')",
)

from opentelemetry import metrics
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.util._once import Once

import executor_guard
from executor_guard import _diagnostics, _metrics

from .helpers import line_of

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")

Point = tuple[str, dict[str, Any], int]


def reset_otel_globals() -> None:
    """Forget the global meter provider, as opentelemetry-test-utils does between tests."""
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()


@pytest.fixture(autouse=True)
def _fresh_otel() -> Iterator[None]:
    reset_otel_globals()
    _diagnostics.forget()
    yield
    provider = metrics_internal._METER_PROVIDER
    if isinstance(provider, MeterProvider):
        provider.shutdown()
    reset_otel_globals()


def host_sdk() -> InMemoryMetricReader:
    """What a host does: its own SDK provider, set globally, with a reader."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def points(reader: InMemoryMetricReader) -> list[Point]:
    """Every data point of executor_guard's meter: (instrument, attributes, value)."""
    found: list[Point] = []
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != "executor_guard":
                continue
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)  # sums and gauges only
                    found.append((metric.name, dict(point.attributes or {}), int(point.value)))
    return found


def by_line(found: list[Point], name: str) -> dict[tuple[str, int], Point]:
    return {
        (attrs["code.filepath"], attrs["code.lineno"]): (n, attrs, value)
        for n, attrs, value in found
        if n == name and "code.lineno" in attrs
    }


def churn(n: int) -> None:
    for _ in range(n):
        ThreadPoolExecutor(max_workers=1).shutdown()  # churn line


def left_open() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1)  # open line


def test_the_reader_sees_the_json_reports_counts() -> None:
    reader = host_sdk()
    executor_guard.install(mode="log", threshold=5, log_target="logging", metrics="otel")
    churn(12)
    kept = [left_open() for _ in range(2)]
    found = points(reader)
    data = executor_guard.report().to_dict()
    created = by_line(found, _metrics.CREATED)
    live = by_line(found, _metrics.LIVE)
    peak = by_line(found, _metrics.PEAK_LIVE)
    assert data["sites"]
    for site in data["sites"]:
        key = (site["file"], site["line"])
        assert created[key][2] == site["created"], key
        assert live[key][2] == site["live"], key
        assert peak[key][2] == site["peak_live"], key
        attrs = created[key][1]
        assert attrs["code.function"] == site["function"]
        assert attrs["finding"] == (",".join(site["findings"]) or "none")
        assert attrs["pool.class"] == max(site["classes"], key=site["classes"].get)
    [(_, attrs, flagged)] = [p for p in found if p[0] == _metrics.WITH_FINDINGS]
    assert attrs == {} and flagged == data["totals"]["sites_with_findings"] == 1
    churn_key = (__file__, line_of(churn, "churn line"))
    assert created[churn_key][1]["finding"] == "churn" and created[churn_key][2] == 12
    open_key = (__file__, line_of(left_open, "open line"))
    assert created[open_key][2] == 2 and live[open_key][2] == 2
    assert created[open_key][1]["finding"] == "none"
    for pool in kept:
        pool.shutdown()
    assert by_line(points(reader), _metrics.LIVE)[open_key][2] == 0


def test_a_provider_the_host_sets_after_the_guard_installed_gets_the_instruments() -> None:
    executor_guard.install(mode="log", log_target="logging", metrics="otel")
    churn(3)  # counted before any provider exists: read later from the registry
    reader = host_sdk()
    churn(2)
    created = by_line(points(reader), _metrics.CREATED)
    assert created[(__file__, line_of(churn, "churn line"))][2] == 5


def test_enable_is_idempotent_and_counts_are_not_doubled() -> None:
    reader = host_sdk()
    executor_guard.install(mode="log", log_target="logging", metrics="otel")
    executor_guard.install(mode="log", log_target="logging", metrics="otel", threshold=50)
    _metrics.enable("otel")
    churn(4)
    found = [p for p in points(reader) if p[0] == _metrics.CREATED]
    assert len(found) == 1 and found[0][2] == 4


def test_without_a_provider_nothing_is_ever_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's proxy never calls the callbacks: metrics on with no SDK cost nothing.

    Until the host sets a provider; then its collections read the registry.
    """
    reads: list[object] = []
    real_build = _metrics.build

    def counting_build(*args: Any) -> Any:
        reads.append(args)
        return real_build(*args)

    monkeypatch.setattr(_metrics, "build", counting_build)
    guard = executor_guard.install(mode="log", log_target="logging", metrics="otel")
    churn(10)
    assert _metrics.enabled()
    assert guard.report().to_dict()["sites"][0]["created"] == 10
    assert reads == []
    reader = host_sdk()
    assert by_line(points(reader), _metrics.CREATED)[(__file__, line_of(churn, "churn line"))]
    assert len(reads) == 1  # one snapshot per collection, shared by the four instruments


def test_a_failing_read_is_one_line_and_never_reaches_the_sdk(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = host_sdk()
    guard = executor_guard.install(mode="log", log_target="logging", metrics="otel")
    churn(2)

    def broken(self: object) -> None:
        raise RuntimeError("snapshot broke")

    monkeypatch.setattr(type(guard), "snapshot", broken)
    assert points(reader) == []
    assert points(reader) == []
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "executor_guard: internal error while reading metrics (RuntimeError: snapshot broke); "
        "the program continues unguarded there"
    ]
    monkeypatch.undo()
    assert by_line(points(reader), _metrics.CREATED)[(__file__, line_of(churn, "churn line"))]


def test_sites_past_the_cap_share_one_series_and_membership_is_sticky(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_metrics, "MAX_SERIES_SITES", 3)
    reader = host_sdk()
    executor_guard.install(mode="log", log_target="logging", metrics="otel", threshold=10**6)

    def make(name: str, count: int) -> None:
        code = compile("for _ in range(n):\n    ThreadPoolExecutor(1).shutdown()\n", name, "exec")
        exec(code, {"ThreadPoolExecutor": ThreadPoolExecutor, "n": count})

    for index in range(5):
        make(f"/svc/site{index}.py", index + 1)
    created = by_line(points(reader), _metrics.CREATED)
    own = {key: point[2] for key, point in created.items() if key[0] != _metrics.OTHER}
    # The three busiest get series of their own; the others are summed.
    assert own == {("/svc/site4.py", 2): 5, ("/svc/site3.py", 2): 4, ("/svc/site2.py", 2): 3}
    assert created[(_metrics.OTHER, 0)][2] == 1 + 2
    assert created[(_metrics.OTHER, 0)][1]["code.function"] == _metrics.OTHER
    make("/svc/site9.py", 50)  # busier, but late: it joins (other)
    make("/svc/site0.py", 1)
    created = by_line(points(reader), _metrics.CREATED)
    assert len(created) == 4
    assert created[(_metrics.OTHER, 0)][2] == 1 + 2 + 50 + 1
    assert created[("/svc/site4.py", 2)][2] == 5


def test_sites_beyond_the_registrys_cap_are_counted_in_other() -> None:
    from executor_guard import _registry

    reader = host_sdk()
    guard = executor_guard.install(mode="log", log_target="logging", metrics="otel")
    guard.registry.overflow = 7  # creations the registry could not give a site
    created = by_line(points(reader), _metrics.CREATED)
    assert created[(_metrics.OTHER, 0)][2] == 7
    assert _metrics.MAX_SERIES_SITES < _registry.MAX_SITES


def test_sites_differing_only_by_creator_share_one_point() -> None:
    reader = host_sdk()
    guard = executor_guard.install(mode="log", log_target="logging", metrics="otel")
    churn(1)
    snapshot = guard.snapshot()
    [view] = [v for v in snapshot.sites if v["function"] == "churn"]
    twin = dict(view, creator=("/lib/x.py", 3, "make"), created=4, live=1, peak_live=3)
    snapshot.sites.append(twin)
    table = _metrics.build(snapshot)
    [row] = [r for r in table.rows if r[0]["code.function"] == "churn"]
    assert row[1:] == (5, 1, 3)
    assert len(points(reader)) > 0  # the instruments themselves still read the real guard


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("EXECUTOR_GUARD", "OTEL_"))}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=full,
    )


def test_a_missing_opentelemetry_api_is_one_line_and_the_guard_works() -> None:
    result = run_python(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
        from concurrent.futures import ThreadPoolExecutor
        import executor_guard
        executor_guard.install(mode="log", log_target="logging", metrics="otel")
        executor_guard.install(mode="log", log_target="logging", metrics="otel")
        for _ in range(3):
            ThreadPoolExecutor(1).shutdown()
        print(executor_guard.report().to_dict()["sites"][0]["created"])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3"]
    assert result.stderr.splitlines() == [
        "executor_guard: metrics=otel needs opentelemetry-api, which is not installed: "
        "running without metrics (pip install 'executor-guard[otel]')"
    ]


IMPORTED = """
    import sys
    from concurrent.futures import ThreadPoolExecutor
    import executor_guard
    {install}
    ThreadPoolExecutor(1).shutdown()
    executor_guard.report().to_dict()
    from executor_guard import _metrics
    print("opentelemetry" in sys.modules, _metrics.enabled())
"""


@pytest.mark.parametrize(
    ("install", "env", "expected"),
    [
        ("executor_guard.install()", {}, "False False"),
        ("executor_guard.install(metrics='otel')", {}, "True True"),
        ("", {"EXECUTOR_GUARD": "log"}, "False False"),
        ("", {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_METRICS": "otel"}, "True True"),
    ],
    ids=["api-off", "api-on", "env-off", "env-on"],
)
def test_opentelemetry_is_imported_only_when_metrics_are_on(
    install: str, env: dict[str, str], expected: str
) -> None:
    result = run_python(IMPORTED.format(install=install), env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_its_own_guard() -> None:
    result = run_python(
        """
        import os, sys, json
        from concurrent.futures import ThreadPoolExecutor
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
        import executor_guard

        executor_guard.install(mode="log", log_target="logging", metrics="otel")
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

        def created():
            out = {}
            for rm in reader.get_metrics_data().resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name == "executor_guard.pools.created":
                            for p in m.data.data_points:
                                out[p.attributes["code.function"]] = p.value
            return out

        def parent_line():
            ThreadPoolExecutor(1).shutdown()
        def child_line():
            ThreadPoolExecutor(1).shutdown()

        for _ in range(4):
            parent_line()
        before = created()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            for _ in range(2):
                child_line()
            os.write(write, json.dumps(created()).encode())
            os._exit(0)
        os.close(write)
        child = json.loads(os.read(read, 65536))
        os.waitpid(pid, 0)
        parent_line()
        print(json.dumps({"before": before, "child": child, "after": created()}))
        """
    )
    assert result.returncode == 0, result.stderr
    import json

    seen = json.loads(result.stdout)
    assert seen["before"]["parent_line"] == 4
    # The child's guard starts empty: its own line only (the SDK's own at-fork
    # handler builds a pool too, attributed to the fork's line).
    assert seen["child"]["child_line"] == 2 and "parent_line" not in seen["child"]
    assert seen["after"]["parent_line"] == 5 and "child_line" not in seen["after"]
