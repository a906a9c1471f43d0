"""Reading and merging report files never crash: a bad field is one line, status 2.

The property-based test mutates real reports (every path, any JSON value) and
requires each one either to load and render in every format, merged with
itself and a sound report, or to be refused with :class:`ReportFileError`.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import executor_guard
from executor_guard import Report, ReportFileError
from executor_guard._report import merge, validate

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")


def _per_call() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(int).result()
    pool.shutdown(wait=False)


def _real_report() -> dict[str, Any]:
    with warnings.catch_warnings(), executor_guard.guarded(threshold=3) as guard:
        warnings.simplefilter("ignore", executor_guard.ExecutorChurnWarning)
        for _ in range(5):
            _per_call()
        with ThreadPoolExecutor(1) as shared:
            shared.submit(int).result()
    return guard.report().to_dict()


REAL = _real_report()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


PATHS = _paths(REAL)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool) -> None:
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value


def _use(data: dict[str, Any]) -> None:
    report = Report(validate(data, "mutated.json"))
    report.to_text(limit=None)
    report.to_markdown()
    report.to_html()
    merged = merge([report, Report(validate(copy.deepcopy(REAL), "sound.json"))])
    merged.to_text()
    merged.to_html()
    Report(validate(json.loads(merged.to_json()), "merged.json")).to_text()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    paths=st.lists(st.sampled_from(PATHS), min_size=1, max_size=3),
    value=JSON_VALUES,
    delete=st.booleans(),
)
def test_any_mutation_of_a_real_report_loads_and_renders_or_is_refused(
    paths: list[tuple[Any, ...]], value: Any, delete: bool
) -> None:
    data = copy.deepcopy(REAL)
    for path in paths:
        try:
            _set(data, path, value, delete)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed the place
    refused = None
    try:
        _use(data)
    except ReportFileError as error:
        refused = error
    if refused is not None:
        assert refused.path in ("mutated.json", "sound.json", "merged.json")
        assert "\n" not in str(refused)


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda d: d["sites"][0].update(stacks=None), "sites[0].stacks"),
        (lambda d: d["sites"][0].update(classes=[]), "sites[0].classes"),
        (lambda d: d["sites"][0]["stacks"][0]["frames"][0].update(file=None), "sites[0].stacks"),
        (lambda d: d["sites"][0].update(function=3), "sites[0].function: expected a string"),
        (lambda d: d["totals"].update(pools="many"), "totals.pools: expected an integer"),
        (lambda d: d["process"].update(cwd=3), "process.cwd: expected a string"),
        (lambda d: d.update(processes=3), "processes: expected a list"),
    ],
)
def test_report_on_a_bad_field_is_one_line_naming_file_and_field(
    tmp_path: Path, mutate: Any, named: str
) -> None:
    data = copy.deepcopy(REAL)
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = subprocess.run(
        [sys.executable, "-m", "executor_guard", "report", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"executor-guard report: error: {path}: malformed report: ")
    assert named in line


@pytest.mark.parametrize("value", ["-3", "x", "1.5"])
def test_a_bad_limit_is_one_line_naming_the_flag_the_value_and_what_it_takes(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(REAL))
    result = subprocess.run(
        [sys.executable, "-m", "executor_guard", "report", "--limit", value, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "--limit" in line and repr(value) in line, line
    assert "0 or more" in line, line


def test_one_site_left_out_by_the_limit_is_one_site(tmp_path: Path) -> None:
    flagged = [site for site in REAL["sites"] if site["findings"]]
    assert flagged
    path = tmp_path / "report.json"
    path.write_text(json.dumps(REAL))
    limit = str(len(flagged) - 1)
    result = subprocess.run(
        [sys.executable, "-m", "executor_guard", "report", "--limit", limit, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "... and 1 more site with findings (see the JSON report, or --all)" in result.stdout


def test_empty_totals_are_derived_from_the_sites() -> None:
    data = copy.deepcopy(REAL)
    data["totals"] = {}
    assert Report(validate(data, "r.json")).to_dict()["totals"]["pools"] == 6


def test_the_same_report_twice_counts_once() -> None:
    report = Report(validate(copy.deepcopy(REAL), "r.json"))
    merged = merge([report, Report(validate(copy.deepcopy(REAL), "again.json"))])
    assert merged.to_dict()["totals"]["pools"] == REAL["totals"]["pools"]
    assert merged.sites[0]["created"] == REAL["sites"][0]["created"]


def test_a_merge_says_so_and_names_configurations_that_differ() -> None:
    other = copy.deepcopy(REAL)
    other["process"]["pid"] = REAL["process"]["pid"] + 1
    other["config"]["threshold"] = 7
    merged = merge([Report(copy.deepcopy(REAL)), Report(other)]).to_dict()
    process = merged["process"]
    assert process["merged"] is True and process["processes"] == 2
    assert process["pids"] == [REAL["process"]["pid"], REAL["process"]["pid"] + 1]
    assert merged["config_differs"] == ["threshold"]
    headline = Report(merged).to_text().splitlines()[0]
    assert headline.endswith(
        "merged from 2 processes whose configurations differ (threshold; "
        "the first report's is shown)"
    )
