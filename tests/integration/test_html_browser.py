"""The HTML report in a real browser: headless Chromium loads the page from a file.

Reports come from real runs of the bundled incident, its fixed twin and a
three-process tree; the page is written by ``report --format html -o`` and
checked through the DevTools protocol: the rendered DOM, sorting and filtering
with JavaScript, the essentials without it, and a screenshot that is not blank.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from .browser import Browser, find_chromium
from .test_launcher import guarded, write

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)"
)


def html_report(tmp_path: Path, name: str, *reports: Path) -> Path:
    page = tmp_path / f"{name}.html"
    result = subprocess.run(
        [sys.executable, "-m", "executor_guard", "report", "--format", "html", "-o", str(page)]
        + [str(r) for r in reports],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return page


def run_example(tmp_path: Path, example: str) -> Path:
    report = tmp_path / f"{example}.json"
    result = guarded(
        "-q", "--report", str(report), str(ROOT / "examples" / f"{example}.py"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return report


@pytest.fixture
def browser() -> Browser:
    assert CHROMIUM is not None
    with Browser(CHROMIUM) as opened:
        yield opened  # type: ignore[misc]


def _pixels_vary(png: bytes) -> int:
    """How many distinct byte values the decoded image data holds (1 for a blank page)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, data = 8, b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    return len(set(zlib.decompress(data)))


def test_the_incident_page_shows_the_pile_up(tmp_path: Path, browser: Browser) -> None:
    page = html_report(tmp_path, "incident", run_example(tmp_path, "incident"))
    browser.open(page.as_uri())
    assert browser.evaluate("document.body.getAttribute('data-script')") == "ready"
    rows = browser.evaluate("document.querySelectorAll('#sites tbody tr').length")
    assert rows == 1
    location = browser.evaluate("document.querySelector('#sites tbody td').textContent")
    assert "incident.py:25 in job_event_listener" in location
    # The timeline climbs: the step line's highest point is the site's peak.
    label = browser.evaluate("document.querySelector('svg.timeline').getAttribute('aria-label')")
    data = json.loads((tmp_path / "incident.json").read_text())
    assert label == f"live pools over time, peak {data['sites'][0]['peak_live']}"
    assert data["sites"][0]["peak_live"] > 5
    frames = browser.evaluate("document.querySelectorAll('details .frame.app').length")
    assert frames >= 3
    shot = browser.screenshot()
    (tmp_path / "incident.png").write_bytes(shot)
    assert _pixels_vary(shot) > 50


def test_the_fixed_twin_looks_healthy(tmp_path: Path, browser: Browser) -> None:
    page = html_report(tmp_path, "fixed", run_example(tmp_path, "incident_fixed"))
    browser.open(page.as_uri())
    assert browser.evaluate("document.querySelectorAll('.finding').length") == 0
    label = browser.evaluate("document.querySelector('svg.timeline').getAttribute('aria-label')")
    assert label == "live pools over time, peak 1"
    assert _pixels_vary(browser.screenshot()) > 20


def test_a_merged_three_process_report_sorts_and_filters(tmp_path: Path, browser: Browser) -> None:
    write(
        tmp_path / "child.py",
        """
        import sys
        from concurrent.futures import ThreadPoolExecutor
        def burst(n):
            for _ in range(n):
                ThreadPoolExecutor(1).shutdown()
        burst(int(sys.argv[1]))
        with ThreadPoolExecutor(2) as pool:
            pool.submit(int)
        """,
    )
    reports = []
    for count in (3, 12, 5):
        report = tmp_path / f"r{count}.json"
        result = guarded("-q", "--report", str(report), "child.py", str(count), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        reports.append(report)
    page = html_report(tmp_path, "merged", *reports)
    browser.open(page.as_uri())
    assert browser.evaluate("document.querySelectorAll('#processes tbody tr').length") == 3
    assert "merged from 3 processes" in browser.evaluate(
        "document.getElementById('summary').textContent"
    )

    created = (
        "Array.from(document.querySelectorAll('#sites tbody tr'))"
        ".map(r => +r.cells[2].getAttribute('data-v'))"
    )
    browser.evaluate("document.querySelector('th[data-key=created]').click()")
    assert browser.evaluate(created) == [20, 3]
    browser.evaluate("document.querySelector('th[data-key=created]').click()")
    assert browser.evaluate(created) == [3, 20]

    visible = (
        "Array.from(document.querySelectorAll('#sites tbody tr'))"
        ".filter(r => r.style.display !== 'none').length"
    )
    browser.evaluate("document.querySelector('.filters input[value=churn]').click()")
    assert browser.evaluate(visible) == 1
    browser.evaluate("document.querySelector('.filters input[value=churn]').click()")
    assert browser.evaluate(visible) == 2


def test_without_javascript_the_table_and_stacks_are_there(
    tmp_path: Path, browser: Browser
) -> None:
    page = html_report(tmp_path, "incident", run_example(tmp_path, "incident"))
    browser.open(page.as_uri(), javascript=False)
    assert browser.evaluate("document.body.getAttribute('data-script')") is None
    assert browser.evaluate("document.querySelectorAll('#sites tbody tr').length") == 1
    assert browser.evaluate("document.querySelectorAll('details').length") >= 1


def test_a_function_named_script_does_not_run(tmp_path: Path, browser: Browser) -> None:
    write(
        tmp_path / "evil.py",
        """
        import sys
        from concurrent.futures import ThreadPoolExecutor
        source = "def f():\\n    ThreadPoolExecutor(1).shutdown()\\n"
        namespace = {"ThreadPoolExecutor": ThreadPoolExecutor}
        exec(compile(source, "<img src=x onerror=window.pwned=1>.py", "exec"), namespace)
        f = namespace["f"]
        name = "<script>window.pwned=2</script>"
        changes = {"co_name": name}
        if sys.version_info >= (3, 11):
            changes["co_qualname"] = name
        f.__code__ = f.__code__.replace(**changes)
        for _ in range(12):
            f()
        """,
    )
    result = guarded("-q", "--report", "evil.json", "evil.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "evil.json").read_text())
    assert any("<script>" in site["function"] for site in data["sites"])
    page = html_report(tmp_path, "evil", tmp_path / "evil.json")
    browser.open(page.as_uri())
    assert browser.evaluate("typeof window.pwned") == "undefined"
    assert "<script>window.pwned=2</script>" in browser.evaluate("document.body.textContent")
