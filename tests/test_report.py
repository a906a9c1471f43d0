"""Reports: the JSON schema, the text summary, atomic files, loading and merging."""

from __future__ import annotations

import json
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import executor_guard
from executor_guard import Report, ReportFileError, _report
from executor_guard._report import merge, validate

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")


def per_request() -> None:
    pool = ThreadPoolExecutor(max_workers=1)  # report site
    pool.submit(int).result()
    pool.shutdown(wait=False)


def healthy(pool: ThreadPoolExecutor) -> None:
    pool.submit(int).result()


def sample_report() -> Report:
    with executor_guard.guarded(threshold=5) as guard:
        for _ in range(12):
            per_request()
        with ThreadPoolExecutor(2) as shared:
            for _ in range(3):
                healthy(shared)
    return guard.report()


def test_to_dict_has_every_stable_key_of_the_product_schema() -> None:
    data = sample_report().to_dict()
    assert data["schema"] == 1
    assert data["tool"] == {"name": "executor_guard", "version": executor_guard.__version__}
    process = data["process"]
    assert set(process) >= {
        "pid",
        "argv",
        "python",
        "started_at",
        "reported_at",
        "threads",
        "peak_threads",
        "rss_bytes",
        "fds",
    }
    assert process["pid"] == os.getpid()
    assert process["python"] == ".".join(map(str, sys.version_info[:3]))
    assert data["config"]["threshold"] == 5 and data["config"]["window"] is None
    assert data["totals"]["pools"] == 13
    assert data["totals"]["sites"] == 2
    assert data["totals"]["sites_with_findings"] == 1
    site = data["sites"][0]
    assert set(site) >= {
        "file",
        "line",
        "function",
        "creator",
        "classes",
        "created",
        "live",
        "peak_live",
        "first_at",
        "last_at",
        "rate_per_min",
        "shutdown",
        "threads",
        "findings",
        "stacks",
        "stack_sampling",
    }
    assert set(site["shutdown"]) == {"context", "wait", "nowait", "never", "open"}
    assert site["created"] == 12 and data["sites"][1]["created"] == 1
    # Twelve pools within milliseconds are a burst: no per-minute rate for it.
    assert site["last_at"] - site["first_at"] < 1 and site["rate_per_min"] is None
    assert 0 <= site["first_at"] <= site["last_at"]
    for stack in site["stacks"]:
        assert stack["count"] >= 1
        for frame in stack["frames"]:
            # Application frames keep their source line as the process read it.
            keys = {"file", "line", "function", "app"} | ({"source"} if frame["app"] else set())
            assert set(frame) == keys
    json.dumps(data)  # JSON-ready


def test_to_text_puts_flagged_sites_first_and_marks_application_frames() -> None:
    text = sample_report().to_text()
    lines = text.splitlines()
    assert lines[0].startswith("executor_guard: 13 pools from 2 call sites; 1 with findings")
    flagged = next(i for i, line in enumerate(lines) if line.startswith("[churn"))
    assert "in per_request" in lines[flagged]
    assert "shutdown: nowait 12" in text
    app_frames = [line for line in lines if line.lstrip().startswith("> ")]
    assert app_frames and app_frames[-1].rstrip().endswith("in per_request")
    assert "pool = ThreadPoolExecutor(max_workers=1)  # report site" in text
    assert "1 call site without findings" in text


def test_write_json_is_atomic_owner_only_and_expands_pid(tmp_path: Path) -> None:
    report = sample_report()
    written = report.write_json(str(tmp_path / "guard-{pid}.json"))
    assert written == str(tmp_path / f"guard-{os.getpid()}.json")
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    assert json.loads(Path(written).read_text()) == report.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"guard-{os.getpid()}.json"]


def test_write_json_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    sample_report().write_json(str(link))
    assert victim.read_text() == "keep me"
    assert not link.is_symlink()


def test_write_json_failure_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "report.json"
    with pytest.raises(FileNotFoundError):
        sample_report().write_json(str(target))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty file"),
        ('{"schema": 1, "tool": {"name": "exec', "not valid JSON"),
        ("[1, 2, 3]", "a JSON list"),
        ('{"hello": "world"}', "no 'schema' and 'tool' keys"),
        ('{"schema": 1, "tool": {"name": "coverage"}}', "tool 'coverage'"),
        ('{"schema": 99, "tool": {"name": "executor_guard"}}', "schema 99 is newer"),
        ('{"schema": 1, "tool": {"name": "executor_guard"}}', "'process' missing"),
    ],
)
def test_load_rejects_files_that_are_not_reports(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ReportFileError) as excinfo:
        _report.load(str(path))
    assert str(excinfo.value).startswith(f"{path}: ")
    assert problem in str(excinfo.value)


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReportFileError, match="no such file"):
        _report.load(str(tmp_path / "nope.json"))


def test_a_written_report_loads_back_identically(tmp_path: Path) -> None:
    report = sample_report()
    loaded = _report.load(report.write_json(str(tmp_path / "r.json")))
    assert loaded.to_dict() == report.to_dict()
    assert loaded.to_text() == report.to_text()


def test_merge_adds_sites_by_location_across_processes(tmp_path: Path) -> None:
    first = sample_report().to_dict()
    second = json.loads(json.dumps(first))
    second["process"]["pid"] = first["process"]["pid"] + 1
    for data, name in ((first, "a.json"), (second, "b.json")):
        Report(data).write_json(str(tmp_path / name))
    merged = _report.load_all([str(tmp_path / "a.json"), str(tmp_path / "b.json")]).to_dict()
    assert merged["totals"]["pools"] == 26
    assert merged["totals"]["sites"] == 2
    site = merged["sites"][0]
    assert site["created"] == 24
    assert site["shutdown"]["nowait"] == 24
    assert site["findings"] == first["sites"][0]["findings"]
    assert site["stacks"][0]["count"] == 2 * first["sites"][0]["stacks"][0]["count"]
    assert [p["pid"] for p in merged["processes"]] == [
        first["process"]["pid"],
        second["process"]["pid"],
    ]
    assert "merged from 2 processes" in Report(merged).to_text()


def test_report_after_uninstall_keeps_what_was_recorded() -> None:
    executor_guard.install(threshold=3)
    for _ in range(4):
        per_request()
    open_pool = ThreadPoolExecutor(1)
    executor_guard.uninstall()
    open_pool.shutdown()  # unseen now: stays "open", never turns into "never"
    del open_pool
    data = executor_guard.report().to_dict()
    assert data["totals"]["pools"] == 5
    assert sum(s["shutdown"]["open"] for s in data["sites"]) == 1
    assert sum(s["shutdown"]["never"] for s in data["sites"]) == 0
    executor_guard.reset()
    assert executor_guard.report().to_dict()["totals"]["pools"] == 0


def test_a_guarded_block_reports_only_what_happened_inside_it() -> None:
    outer = executor_guard.install(threshold=100)
    per_request()
    with executor_guard.guarded(threshold=100) as inner:
        per_request()
        per_request()
    per_request()
    assert inner.report().to_dict()["totals"]["pools"] == 2
    assert outer.report().to_dict()["totals"]["pools"] == 2
    assert executor_guard.report().to_dict()["totals"]["pools"] == 2
    assert executor_guard.is_installed()


def test_a_report_with_only_the_required_fields_renders(tmp_path: Path) -> None:
    """Optional fields a file leaves out are read as their schema defaults, never a KeyError."""
    site = {"file": "a.py", "line": 1, "function": "f", "created": 3}
    site.update(shutdown={"wait": 3}, findings=["churn"])
    minimal = {"schema": 1, "tool": {"name": "executor_guard"}, "process": {}, "config": {}}
    minimal.update(totals={}, sites=[site])
    path = tmp_path / "minimal.json"
    path.write_text(json.dumps(minimal))
    report = _report.load(str(path))
    assert report.sites[0]["live"] == 0
    assert report.sites[0]["stacks"] == []
    assert report.to_dict()["totals"]["pools"] == 3
    assert "[churn] a.py:1 in f" in report.to_text()


def test_a_rate_is_given_only_for_creations_spread_over_a_second() -> None:
    from executor_guard._schema import MIN_RATE_SECONDS, rate_per_min

    burst = {"created": 60, "refused": 0, "first_at": 0.0, "last_at": 0.003}
    assert rate_per_min(burst) is None  # not 1.2 million a minute
    spread = dict(burst, last_at=MIN_RATE_SECONDS * 2)
    assert rate_per_min(spread) == 60 * 60 / (MIN_RATE_SECONDS * 2)
    assert rate_per_min(dict(spread, created=1)) is None


def test_merged_times_count_from_the_earliest_process_start() -> None:
    def report(pid: int, started: str, first: float, last: float) -> Report:
        site = {
            "file": "/app/jobs.py",
            "line": 5,
            "function": "f",
            "created": 6,
            "shutdown": {"nowait": 6},
            "findings": [],
            "first_at": first,
            "last_at": last,
            "timeline": [[first, 1], [last, 2]],
        }
        data = {
            "schema": 1,
            "tool": {"name": "executor_guard"},
            "process": {"pid": pid, "started_at": started},
            "config": {"threshold": 100},
            "totals": {"pools": 6},
            "sites": [site],
        }
        return Report(validate(data, f"r{pid}.json"))

    # The second process started 30 s after the first; each counts from its own start.
    merged = merge(
        [
            report(1, "2026-01-01T00:00:00+00:00", 0.5, 0.6),
            report(2, "2026-01-01T00:00:30+00:00", 0.5, 0.6),
        ]
    ).to_dict()
    [site] = merged["sites"]
    assert (site["first_at"], site["last_at"]) == (0.5, 30.6)
    assert site["rate_per_min"] == round(12 * 60 / 30.1, 1)
    assert merged["process"]["started_at"] == "2026-01-01T00:00:00+00:00"


def test_merged_sites_get_no_rate_when_a_start_time_is_missing() -> None:
    def data(pid: int, process: dict[str, object]) -> dict[str, object]:
        return {
            "schema": 1,
            "tool": {"name": "executor_guard"},
            "process": dict(process, pid=pid),
            "config": {"threshold": 100},
            "totals": {"pools": 6},
            "sites": [
                {
                    "file": "/a.py",
                    "line": 1,
                    "function": "f",
                    "created": 6,
                    "shutdown": {"nowait": 6},
                    "findings": [],
                    "first_at": 0.0,
                    "last_at": 9.0,
                }
            ],
        }

    merged = merge(
        [
            Report(validate(data(1, {"started_at": "2026-01-01T00:00:00+00:00"}), "a")),
            Report(validate(data(2, {}), "b")),
        ]
    ).to_dict()
    assert merged["sites"][0]["rate_per_min"] is None
