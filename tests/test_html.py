"""The HTML report: self-contained, escaped, bounded, and drawn from the report's own data."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import executor_guard
from executor_guard import _html


def _site(function: str = "handle", **changes: Any) -> dict[str, Any]:
    site: dict[str, Any] = {
        "file": "/srv/app/jobs.py",
        "line": 7,
        "function": function,
        "creator": {"file": "/srv/app/jobs.py", "line": 7, "function": function},
        "classes": {"ThreadPoolExecutor": 12},
        "created": 12,
        "live": 0,
        "peak_live": 3,
        "rate_per_min": 120.0,
        "shutdown": {"context": 0, "wait": 0, "nowait": 12, "never": 0, "open": 0},
        "threads": {"MainThread": 12},
        "findings": ["churn", "nowait_pending"],
        "stacks": [
            {
                "count": 12,
                "frames": [
                    {"file": "/srv/app/jobs.py", "line": 7, "function": function, "app": True}
                ],
            }
        ],
        "timeline": [[0.0, 1], [0.1, 2], [0.2, 3], [0.3, 0]],
    }
    site.update(changes)
    return site


def _report(sites: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema": 1,
        "process": {"pid": 1, "argv": ["app.py"], "python": "3.13.0", "cwd": "/srv"},
        "config": {"mode": "warn", "threshold": 10},
        "totals": {"pools": sum(s["created"] for s in sites), "sites": len(sites)},
        "sites": sites,
    }
    data.update(extra)
    return data


def test_the_page_is_self_contained() -> None:
    page = _html.render(_report([_site()]))
    assert page.startswith("<!DOCTYPE html>")
    # Nothing fetched: no src=, no href= other than in-page anchors, no @import or url().
    assert not re.search(r"\bsrc=", page)
    assert set(re.findall(r'href="([^"]*)"', page)) <= {"#site-0"}
    assert "@import" not in page and "url(" not in page
    assert page.count("<script>") == 1


def test_names_from_the_program_are_escaped() -> None:
    evil = "<script>window.pwned=1</script>"
    site = _site(function=evil, threads={evil: 12}, file='/srv/"quoted"<b>.py')
    site["stacks"][0]["frames"][0]["source"] = evil
    page = _html.render(_report([site], process={"pid": 1, "argv": [evil], "python": "3"}))
    assert evil not in page
    assert page.count("<script>") == 1
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    assert '"quoted"<b>' not in page


def test_the_timeline_is_a_step_line_through_every_sample() -> None:
    page = _html.render(_report([_site()]))
    [points] = re.findall(r'<polyline class="line bad" points="([^"]+)"', page)
    ys = [float(point.split(",")[1]) for point in points.split()]
    # Starts at 0, climbs to the peak (the top of the chart), comes back to 0.
    assert ys[0] == ys[-1] == max(ys)
    assert min(ys) == _html._PAD
    assert "peak 3" in page


def test_a_healthy_site_is_drawn_apart_from_one_with_findings() -> None:
    page = _html.render(_report([_site(findings=[]), _site(line=9)]))
    assert re.findall(r'<polyline class="(line \w+)"', page) == ["line ok", "line bad"]


def test_a_merged_site_shows_its_peak_not_live_counts_of_different_moments() -> None:
    site = _site(processes=3, live=38, peak_live=15)
    page = _html.render(_report([site]))
    assert "peak 15 in one process" in page
    assert "38 / 15" not in page
    assert "the busiest of 3 processes" in page


def test_a_site_without_samples_says_so() -> None:
    page = _html.render(_report([_site(timeline=[])]))
    assert "no timeline recorded" in page
    assert "<polyline" not in page


def test_thousands_of_sites_stay_bounded() -> None:
    sites = [_site(function=f"f{i}", findings=[], line=i) for i in range(5000)]
    sites[4321]["findings"] = ["churn"]
    page = _html.render(_report(sites))
    assert page.count("<tr data-findings=") == 5000
    sections = page.count('<section class="site"')
    assert sections == _html.MAX_SECTIONS
    assert 'id="site-4321"' in page  # a site with findings always gets its section
    assert len(page) < 6 * 2**20


def test_a_merged_report_lists_its_processes() -> None:
    processes = [{"pid": pid, "argv": ["w.py"], "python": "3.13.0"} for pid in (11, 12, 13)]
    page = _html.render(_report([_site()], processes=processes))
    assert "merged from 3 processes" in page
    table = page.split('<table id="processes">')[1].split("</table>")[0]
    assert [int(p) for p in re.findall(r"<tr><td>(\d+)</td>", table)] == [11, 12, 13]


def test_a_real_report_has_the_pile_up_in_its_timeline() -> None:
    with executor_guard.guarded(mode="log", threshold=10**9) as guard:
        for _ in range(8):
            pool = ThreadPoolExecutor(max_workers=1)
            pool.submit(time.sleep, 0.2)
            pool.shutdown(wait=False)
    [site] = guard.report(process_figures=False).to_dict()["sites"]
    lives = [live for _, live in site["timeline"]]
    assert lives == list(range(1, 9))  # each pool still running when the next is built
    page = _html.render(guard.report(process_figures=False).to_dict())
    assert "peak 8" in page


def test_a_library_line_serving_several_application_lines_is_grouped() -> None:
    library = {"file": "/venv/site-packages/lib/pools.py", "line": 40, "function": "run"}
    sites = [
        _site(function=f"caller{i}", line=10 + i, created=5 + i, findings=[], creator=library)
        for i in range(8)
    ]
    sites.append(_site(function="alone", line=99))  # its own creator: no group
    page = _html.render(_report(sites))
    table = page.split('<table id="creators">')[1].split("</table>")[0]
    assert table.count("<tr><td>") == 1
    assert "lib/pools.py:40 in run" in table or "pools.py:40 in run" in table
    assert f'<td class="n">{sum(5 + i for i in range(8))}</td>' in table
    assert table.count('href="#site-') == 8


def test_no_group_when_each_library_line_serves_one_application_line() -> None:
    assert "creators" not in _html.render(_report([_site()]))
