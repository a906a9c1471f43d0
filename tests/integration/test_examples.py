"""Every bundled example, run as the README says, gets the findings and the hint it shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: example -> (findings of its one site, words of the hint, words of the summary)
EXAMPLES = {
    "incident.py": (
        ["churn", "nowait_pending"],
        "shut down with wait=False: hoist one pool",
        "60 with work still pending or running",
    ),
    "with_per_request.py": (
        ["churn"],
        "a `with` pool per call pays thread or process start-up",
        "shutdown: context 25",
    ),
    "asyncio_per_call.py": (
        ["churn"],
        "asyncio.Runner",
        "created inside: asyncio/base_events.py:",
    ),
    "per_thread.py": (
        ["churn", "never_shutdown"],
        "share one pool across threads",
        "threads: one new thread per creation (at least 32 distinct names)",
    ),
}


def _launch(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The launcher as the README runs it, from the repository, outside any guard."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    return subprocess.run(
        [sys.executable, "-m", "executor_guard", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_an_example_prints_its_pattern_and_what_to_do(example: str, tmp_path: Path) -> None:
    findings, hint, summary = EXAMPLES[example]
    report = tmp_path / "report.json"
    result = _launch("--report", str(report), f"examples/{example}")
    assert result.returncode == 0, result.stderr
    [site] = json.loads(report.read_text())["sites"]
    assert site["findings"] == findings
    assert hint in site["hint"]
    assert f"hint: {site['hint']}" in result.stderr
    assert summary in result.stderr
    # Paths read as the project shows them, in the warning as in the summary.
    assert f" at examples/{example}:" in result.stderr
    assert f"] examples/{example}:" in result.stderr


def test_the_fixed_twin_prints_one_line() -> None:
    result = _launch("examples/incident_fixed.py")
    assert result.returncode == 0
    expected = "executor_guard: 1 pool from 1 call site; 0 with findings (mode warn, threshold 10)"
    assert result.stderr == expected + "\n"
