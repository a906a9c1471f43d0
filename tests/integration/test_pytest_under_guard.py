"""pytest run under a guard someone else installed: the launcher or environment activation.

Real subprocesses of this interpreter, whose site-packages holds the package
with its ``executor_guard.pth`` start-up hook (the test venvs install it
editable, which ships the hook too). What is checked is what a user sees: the
launcher's exit status and report, the environment guard's JSON report, and
pytest's own outcome, each with a generated test file that churns pools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any, Optional

import pytest

TIMEOUT = 180

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes"),
    pytest.mark.skipif(
        not (Path(sysconfig.get_paths()["purelib"]) / "executor_guard.pth").is_file(),
        reason="the start-up hook is not installed in this interpreter's site-packages",
    ),
]

#: A churning test (12 pools at the helper's line, line 6), a quiet one, and
#: one that inspects its own pools with the fixture.
SUITE = """
    import pytest
    from concurrent.futures import ThreadPoolExecutor

    def make_pool():
        with ThreadPoolExecutor(max_workers=1) as pool:  # helper site
            return pool.submit(int).result()

    def test_body_churns():
        for _ in range(12):
            make_pool()

    def test_quiet():
        with ThreadPoolExecutor(2) as pool:
            assert sum(pool.map(abs, range(100))) == 4950
"""

FIXTURE = """
    def test_counts_its_own_pools(executor_guard):
        make_pool(); make_pool(); make_pool()
        assert executor_guard.pools == 3
        [site] = executor_guard.sites
        assert site["line"] == 6 and site["created"] == 3
        executor_guard.assert_no_churn()
"""


def _env(**variables: str) -> dict[str, str]:
    """This process's environment without any guard or pytest settings, plus ``variables``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("EXECUTOR_GUARD", "PYTEST_"))
    }
    env.update(variables)
    return env


def _suite(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "test_churn.py"
    path.write_text(textwrap.dedent(SUITE) + textwrap.dedent(extra))
    return path


def _run(args: list[str], tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=_env(**variables),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


_PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]


def _helper_site(report: dict[str, Any]) -> Optional[dict[str, Any]]:
    sites: list[dict[str, Any]] = report["sites"]
    for site in sites:
        if site["file"].endswith("test_churn.py") and site["line"] == 6:
            return site
    return None


def _outcome(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# -- the launcher -----------------------------------------------------------------


def test_the_launchers_verdict_counts_the_pools_of_tests(tmp_path: Path) -> None:
    """``executor-guard --fail-on churn -m pytest``: churn in a test makes the run exit 3.

    The plugin was not asked for, so it stands aside: the tests pass and the
    launcher's guard, which saw every pool, gives the verdict.
    """
    suite = _suite(tmp_path)
    report_path = tmp_path / "report.json"
    result = _run(
        [
            "-m",
            "executor_guard",
            "--fail-on",
            "churn",
            "--report",
            str(report_path),
            *_PYTEST,
            str(suite),
        ],
        tmp_path,
    )
    assert result.returncode == 3, _outcome(result)
    assert "2 passed" in result.stdout, _outcome(result)
    assert "[churn] test_churn.py:6 in make_pool" in result.stderr, _outcome(result)
    site = _helper_site(json.loads(report_path.read_text()))
    assert site is not None and site["created"] == 12
    assert site["findings"] == ["churn"]


def test_the_launcher_and_the_plugin_asked_for_both_see_every_pool(tmp_path: Path) -> None:
    """With ``--executor-guard`` under the launcher, the test fails and the report is complete.

    Per-test counts come from the launcher's guard, so each pool is counted
    once: 12 at the helper's line, not 0 (suspended) and not 24 (twice).
    """
    suite = _suite(tmp_path, FIXTURE)
    report_path = tmp_path / "report.json"
    result = _run(
        [
            "-m",
            "executor_guard",
            "--fail-on",
            "churn",
            "--report",
            str(report_path),
            *_PYTEST,
            "--executor-guard",
            str(suite),
        ],
        tmp_path,
    )
    assert result.returncode == 1, _outcome(result)  # pytest's failure, not --fail-on's 3
    assert "1 failed, 2 passed" in result.stdout, _outcome(result)
    assert (
        "executor_guard: 1 call site created pools repeatedly during the call of "
        "test_churn.py::test_body_churns (threshold 10 per test)"
    ) in result.stdout, _outcome(result)
    assert "created 12 (ThreadPoolExecutor 12)" in result.stdout, _outcome(result)
    site = _helper_site(json.loads(report_path.read_text()))
    assert site is not None and site["created"] == 15  # 12 churning + 3 in the fixture test


# -- environment activation -------------------------------------------------------


def test_environment_log_mode_records_the_pools_of_tests_and_fails_none(tmp_path: Path) -> None:
    """``EXECUTOR_GUARD=log pytest``: the report has every pool; no test fails over it."""
    suite = _suite(tmp_path)
    report_path = tmp_path / "report.json"
    result = _run(
        [*_PYTEST, str(suite)],
        tmp_path,
        EXECUTOR_GUARD="log",
        EXECUTOR_GUARD_REPORT=str(report_path),
    )
    assert result.returncode == 0, _outcome(result)
    assert "2 passed" in result.stdout, _outcome(result)
    report = json.loads(report_path.read_text())
    assert report["config"]["mode"] == "log"
    site = _helper_site(report)
    assert site is not None and site["created"] == 12 and "churn" in site["findings"]


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_environment_guard_and_enabled_plugin_coexist(tmp_path: Path, how: str) -> None:
    """The plugin enabled under ``EXECUTOR_GUARD=log``: per-test failure and a complete report."""
    suite = _suite(tmp_path, FIXTURE)
    report_path = tmp_path / "report.json"
    args = [*_PYTEST, str(suite)]
    if how == "flag":
        args.append("--executor-guard")
    else:
        (tmp_path / "pytest.ini").write_text("[pytest]\nexecutor_guard = true\n")
    result = _run(args, tmp_path, EXECUTOR_GUARD="log", EXECUTOR_GUARD_REPORT=str(report_path))
    assert result.returncode == 1, _outcome(result)
    assert "1 failed, 2 passed" in result.stdout, _outcome(result)
    assert "FAILED test_churn.py::test_body_churns" in result.stdout, _outcome(result)
    assert "[churn] test_churn.py:6 in make_pool" in result.stdout, _outcome(result)
    site = _helper_site(json.loads(report_path.read_text()))
    assert site is not None and site["created"] == 15


def test_the_fixture_and_marker_count_per_test_under_the_environment_guard(
    tmp_path: Path,
) -> None:
    """A marked test fails on its own churn; the environment report still has its pools."""
    suite = _suite(
        tmp_path,
        FIXTURE
        + """
    @pytest.mark.executor_guard(threshold=3)
    def test_marked():
        for _ in range(3):
            make_pool()
    """,
    )
    report_path = tmp_path / "report.json"
    result = _run(
        [*_PYTEST, str(suite)],
        tmp_path,
        EXECUTOR_GUARD="log",
        EXECUTOR_GUARD_REPORT=str(report_path),
    )
    assert result.returncode == 1, _outcome(result)
    # test_body_churns passes: the plugin is not enabled, only the marked test is checked.
    assert "1 failed, 3 passed" in result.stdout, _outcome(result)
    assert "FAILED test_churn.py::test_marked" in result.stdout, _outcome(result)
    assert "(threshold 3 per test)" in result.stdout, _outcome(result)
    site = _helper_site(json.loads(report_path.read_text()))
    assert site is not None and site["created"] == 12 + 3 + 3


# -- bad values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        ({"EXECUTOR_GUARD": "bogus"}, "EXECUTOR_GUARD: invalid value 'bogus'"),
        (
            {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_THRESHOLD": "ten"},
            "EXECUTOR_GUARD_THRESHOLD: invalid value 'ten'",
        ),
    ],
)
def test_a_bad_environment_value_leaves_the_guard_off_and_the_tests_alone(
    tmp_path: Path, variables: dict[str, str], said: str
) -> None:
    """One line from the start-up hook, then pytest runs as without the guard."""
    suite = _suite(tmp_path)
    result = _run([*_PYTEST, str(suite)], tmp_path, **variables)
    assert result.returncode == 0, _outcome(result)
    assert "2 passed" in result.stdout, _outcome(result)
    lines = [line for line in result.stderr.splitlines() if said in line]
    assert len(lines) == 1 and lines[0].endswith("the guard is off"), _outcome(result)
    assert "UsageError" not in result.stderr and "ERROR:" not in result.stderr
