"""``ignore`` patterns: the location as reports print it, module names as imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from executor_guard import _callsite

JOBS = """\
from concurrent.futures import ThreadPoolExecutor


def on_event():
    pool = ThreadPoolExecutor(1)
    pool.shutdown(wait=False)


if __name__ == "__main__":
    for _ in range(12):
        on_event()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "__init__.py").write_text("")
    (tmp_path / "svc" / "jobs.py").write_text(JOBS)
    (tmp_path / "run_jobs.py").write_text(
        "from svc.jobs import on_event\nfor _ in range(12):\n    on_event()\n"
    )
    return tmp_path


LAUNCHES = {
    "script": ["svc/jobs.py"],
    "module": ["-m", "svc.jobs"],
    "import": ["run_jobs.py"],
}


def launch(project: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """The launcher in ``project``, outside any guard of the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    return subprocess.run(
        [sys.executable, "-m", "executor_guard", *arguments],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def guard(project: Path, pattern: str, program: list[str]) -> dict[str, object]:
    report = project / "report.json"
    result = launch(project, "-q", "--report", str(report), "--ignore", pattern, *program)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(report.read_text())
    return data


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
@pytest.mark.parametrize(
    "pattern", ["svc/jobs.py:5", "jobs.py:5", "svc/jobs.py", "svc.jobs.on_event", "svc.jobs.*"]
)
def test_a_pattern_matches_however_the_program_was_started(
    project: Path, pattern: str, launch: str
) -> None:
    data = guard(project, pattern, LAUNCHES[launch])
    [site] = data["sites"]  # type: ignore[misc]
    assert site["ignored"] is True and site["findings"] == []
    assert data["ignore_unmatched"] == []


def test_a_pattern_that_never_matched_is_reported(project: Path) -> None:
    data = guard(project, "svc/job.py:5", LAUNCHES["script"])
    [site] = data["sites"]  # type: ignore[misc]
    assert site["ignored"] is False and "churn" in site["findings"]
    assert data["ignore_unmatched"] == ["svc/job.py:5"]


def test_the_summary_names_unmatched_patterns_and_ignored_sites(project: Path) -> None:
    result = launch(
        project, "--ignore", "svc/jobs.py:5", "--ignore", "svc/nothere.py", "svc/jobs.py"
    )
    assert "1 call site ignored by --ignore (12 pools" in result.stderr
    assert "ignore pattern 'svc/nothere.py' matched no call site" in result.stderr
    assert "ignore pattern 'svc/jobs.py:5'" not in result.stderr


def test_a_relative_pattern_matches_only_at_a_directory_boundary() -> None:
    matcher = _callsite.ignore_matcher(("jobs.py:5",))
    assert matcher is not None
    assert _callsite.matches_ignore(matcher, ("/srv/app/jobs.py", 5, "f"), "app.jobs")
    assert not _callsite.matches_ignore(matcher, ("/srv/app/oldjobs.py", 5, "f"), "app.oldjobs")
    assert not _callsite.matches_ignore(matcher, ("/srv/app/jobs.py", 55, "f"), "app.jobs")


def test_module_names_of_a_script_include_its_package_path(project: Path) -> None:
    names = _callsite.module_names(str(project / "svc" / "jobs.py"), "__main__")
    assert "svc.jobs" in names
    assert "__main__" not in names


def test_matched_patterns_says_which_pattern_matched() -> None:
    matcher = _callsite.ignore_matcher(("nothing.py", "*/app/*", "app.jobs.f"))
    assert matcher is not None
    assert _callsite.matched_patterns(matcher, ("/srv/app/jobs.py", 5, "f"), "app.jobs") == {1, 2}


def test_unknown_sources_stay_harmless() -> None:
    assert _callsite.module_names("<string>", "__main__") == ["__main__"]
    assert _callsite.module_names("relative.py", "") == []
