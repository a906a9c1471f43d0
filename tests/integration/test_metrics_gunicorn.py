"""End to end: a Flask service under ``gunicorn -w 2`` exports the guard's metrics over OTLP/HTTP.

The service already exports OpenTelemetry (it sets its own SDK provider with
the OTLP/HTTP exporter); the guard is switched on by the environment alone
(``EXECUTOR_GUARD=log EXECUTOR_GUARD_METRICS=otel``), so it installs at
interpreter start in the master, long before any provider exists, and its
instruments reach each worker's provider through the API's proxy. The
receiver is a tiny ``http.server`` on 127.0.0.1 in this test that decodes
``ExportMetricsServiceRequest`` protobufs with ``opentelemetry-proto``.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .test_real_software import free_port, wait_for

pytest.importorskip("gunicorn")
pytest.importorskip("flask")
pytest.importorskip(
    "opentelemetry.exporter.otlp.proto.http",
    reason="opentelemetry-exporter-otlp-proto-http is not installed "
    "(pip install 'executor-guard[test]')",
)
pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")

APP = """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from flask import Flask
    from opentelemetry import metrics
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    # The service's own OpenTelemetry set-up (endpoint and interval from OTEL_*).
    metrics.set_meter_provider(
        MeterProvider(
            resource=Resource.create({"service.name": "webapp", "process.pid": os.getpid()}),
            metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
        )
    )

    app = Flask(__name__)
    SHARED = ThreadPoolExecutor(max_workers=4)  # the shared pool

    def render(n):
        return str(sum(range(n)))

    @app.route("/churn/<int:n>")
    def churn(n):
        pool = ThreadPoolExecutor(max_workers=2)  # a pool per request
        try:
            return pool.submit(render, n).result()
        finally:
            pool.shutdown(wait=False)

    @app.route("/healthy/<int:n>")
    def healthy(n):
        return SHARED.submit(render, n).result()
"""

# Each worker exports its last counts before it ends.
CONFIG = """
    def worker_exit(server, worker):
        from opentelemetry import metrics

        metrics.get_meter_provider().force_flush()
"""

CHURN_REQUESTS = 24
HEALTHY_REQUESTS = 12


class Receiver:
    """An OTLP/HTTP metrics endpoint on 127.0.0.1 keeping every decoded request."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = metrics_service_pb2.ExportMetricsServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    receiver.requests.append((self.path, request))
                reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def points(self) -> list[dict[str, Any]]:
        """Every executor_guard data point received, flattened, in arrival order."""
        found = []
        with self.lock:
            requests = list(self.requests)
        for path, request in requests:
            assert path == "/v1/metrics"
            for resource_metrics in request.resource_metrics:
                resource = _attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    if scope_metrics.scope.name != "executor_guard":
                        continue
                    for metric in scope_metrics.metrics:
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points:
                            found.append(
                                {
                                    "pid": resource.get("process.pid"),
                                    "name": metric.name,
                                    "kind": kind,
                                    "time": point.time_unix_nano,
                                    "value": point.as_int,
                                    "attributes": _attributes(point.attributes),
                                }
                            )
        return found


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        which = pair.value.WhichOneof("value")
        out[pair.key] = getattr(pair.value, which) if which else None
    return out


def latest(points: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The last point of each series: (pid, instrument, attributes) -> point."""
    last: dict[tuple[Any, ...], dict[str, Any]] = {}
    for point in sorted(points, key=lambda p: p["time"]):
        key = (point["pid"], point["name"], tuple(sorted(point["attributes"].items())))
        last[key] = point
    return last


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_gunicorn_workers_export_the_guards_counts_over_otlp_http(tmp_path: Path) -> None:
    app = textwrap.dedent(APP)
    (tmp_path / "webapp.py").write_text(app)
    (tmp_path / "gunicorn_conf.py").write_text(textwrap.dedent(CONFIG))
    churn_line = next(
        n for n, text in enumerate(app.splitlines(), 1) if "# a pool per request" in text
    )
    shared_line = next(n for n, text in enumerate(app.splitlines(), 1) if "# the shared" in text)
    port = free_port()
    with Receiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EXECUTOR_GUARD", "OTEL_"))}
        env.update(
            {
                "EXECUTOR_GUARD": "log",
                "EXECUTOR_GUARD_LOG_FORMAT": "json",
                "EXECUTOR_GUARD_THRESHOLD": "5",
                "EXECUTOR_GUARD_METRICS": "otel",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
            }
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--chdir",
                str(tmp_path),
                "--config",
                str(tmp_path / "gunicorn_conf.py"),
                "--graceful-timeout",
                "10",
                "webapp:app",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/healthy/1", time.monotonic() + 60)
            # Several clients at once, so that both workers serve.
            with ThreadPoolExecutor(max_workers=4) as clients:
                churned = list(
                    clients.map(lambda n: get(f"{base}/churn/{n}"), range(CHURN_REQUESTS))
                )
                healthy = list(
                    clients.map(lambda n: get(f"{base}/healthy/{n}"), range(HEALTHY_REQUESTS))
                )
            assert churned == [str(sum(range(n))) for n in range(CHURN_REQUESTS)]
            assert healthy == [str(sum(range(n))) for n in range(HEALTHY_REQUESTS)]
            workers = {
                int(p)
                for p in subprocess.run(
                    ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
                ).stdout.split()
            }
            assert len(workers) == 2, workers
        finally:
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=60)
        points = receiver.points()
    assert points, err
    last = latest(points)
    assert {p["pid"] for p in points} == workers  # both workers' series, none of the master's

    def series(name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            p
            for (_, n, _), p in last.items()
            if n == name and all(p["attributes"].get(k) == v for k, v in match.items())
        ]

    created = series("executor_guard.pools.created", **{"code.lineno": churn_line})
    assert sum(p["value"] for p in created) == CHURN_REQUESTS, created
    assert {p["kind"] for p in created} == {"sum"}
    assert all(p["attributes"]["code.function"] == "churn" for p in created)
    assert all(p["attributes"]["code.filepath"].endswith("webapp.py") for p in created)
    assert all(p["attributes"]["pool.class"] == "ThreadPoolExecutor" for p in created)
    assert any("churn" in p["attributes"]["finding"] for p in created)
    # The healthy route builds no pool: no series for it; the one shared pool
    # is one creation per worker and no finding.
    assert not [p for p in points if p["attributes"].get("code.function") == "healthy"]
    shared = series("executor_guard.pools.created", **{"code.lineno": shared_line})
    assert sorted(p["pid"] for p in shared) == sorted(workers)
    assert all(p["value"] == 1 and p["attributes"]["finding"] == "none" for p in shared)
    flagged = series("executor_guard.sites.with_findings")
    assert {p["pid"] for p in flagged} == workers
    assert {p["kind"] for p in flagged} == {"gauge"}
    live = series("executor_guard.pools.live", **{"code.lineno": shared_line})
    assert [p["value"] for p in live] == [1, 1]
