"""Adoption and CI, run for real in a temporary project with a ``pyproject.toml``.

Every test runs the commands a user types (the launcher, ``report``,
``pytest``) in subprocesses, in a project directory of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIMEOUT = 120
ROOT = Path(__file__).resolve().parents[2]

CHURN = """\
from concurrent.futures import ThreadPoolExecutor


def handler():
    pool = ThreadPoolExecutor(max_workers=1)
    pool.submit(int).result()
    pool.shutdown(wait=True)


for _ in range(12):
    handler()
"""

#: The same site, now also shutting pools down with work pending: a new finding.
WORSE = (
    CHURN.replace("pool.submit(int).result()", "pool.submit(time.sleep, 0.05)")
    .replace("wait=True", "wait=False")
    .replace("from concurrent", "import time\nfrom concurrent")
)

#: A second churning site: new to a baseline written before it existed.
SECOND = """\


def other():
    ThreadPoolExecutor(max_workers=1).shutdown()


for _ in range(12):
    other()
"""


def project(tmp_path: Path, table: str = "", app: str = CHURN) -> Path:
    """A project: pyproject.toml with ``table`` under [tool.executor_guard], and app.py."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.executor_guard]\n' + textwrap.dedent(table)
    )
    (tmp_path / "app.py").write_text(app)
    return tmp_path


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    full_env.pop("PYTEST_ADDOPTS", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT,
        env=full_env,
    )  # fmt: skip


def guard(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run("-m", "executor_guard", *args, cwd=cwd, env=env)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# -- the configuration file ------------------------------------------------------


def test_the_launcher_reads_the_table_of_the_nearest_pyproject(tmp_path: Path) -> None:
    root = project(tmp_path, 'threshold = 20\nmode = "log"\n')
    sub = root / "src" / "deep"
    sub.mkdir(parents=True)
    result = guard("--report", "r.json", "../../app.py", cwd=sub)
    assert result.returncode == 0, result.stderr
    report = json.loads((sub / "r.json").read_text())
    assert (report["config"]["threshold"], report["config"]["mode"]) == (20, "log")
    assert report["totals"]["sites_with_findings"] == 0  # 12 pools, threshold 20


def test_precedence_is_command_line_then_environment_then_pyproject(tmp_path: Path) -> None:
    root = project(tmp_path, 'threshold = 20\nmode = "log"\nstack_depth = 4\n')
    env = {"EXECUTOR_GUARD_THRESHOLD": "15", "EXECUTOR_GUARD": "raise"}
    result = guard("-q", "--threshold", "5", "--report", "r.json", "app.py", cwd=root, env=env)
    config = json.loads((root / "r.json").read_text())["config"]
    # --threshold beats the variable, the variable beats the file, the file the default.
    assert (config["threshold"], config["mode"], config["stack_depth"]) == (5, "raise", 4)
    assert result.returncode == 1  # raise mode refused the fifth pool
    assert "ExecutorChurnError" in result.stderr


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            'threshold = "ten"\n',
            "executor-guard: error: pyproject.toml: [tool.executor_guard] threshold: "
            "invalid value 'ten' (expected an integer from 2 to 1000000000)",
        ),
        (
            "treshold = 5\n",
            "executor-guard: error: pyproject.toml: [tool.executor_guard]: unknown key "
            "'treshold' = 5 (known keys: ",
        ),
        (
            'fail_on = "always"\n',
            "executor-guard: error: pyproject.toml: [tool.executor_guard] fail_on: "
            "invalid value 'always' (expected one of: never, churn, any)",
        ),
    ],
)
def test_a_bad_key_or_value_is_one_line_and_status_2(tmp_path: Path, table: str, line: str) -> None:
    root = project(tmp_path, table)
    for command in (("app.py",), ("report", "whatever.json")):
        result = guard(*command, cwd=root)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        expected = line if command[0] == "app.py" else line.replace("guard:", "guard report:", 1)
        assert result.stderr.startswith(expected), result.stderr
        assert "ran" not in result.stdout


def test_a_file_that_is_not_toml_is_one_line(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "pyproject.toml").write_text("[tool.executor_guard\n")
    result = guard("app.py", cwd=root)
    assert result.returncode == 2
    assert result.stderr.startswith("executor-guard: error: pyproject.toml: not valid TOML (")
    assert len(result.stderr.splitlines()) == 1


def test_every_option_of_the_table_has_a_key(tmp_path: Path) -> None:
    from executor_guard import _config, _pyproject

    values = {
        "mode": '"log"',
        "threshold": "25",
        "window": "60",
        "stack_depth": "8",
        "ignore": '["*/vendor/*"]',
        "app": '["mysvc"]',
        "report_path": '"out/r-{pid}.json"',
        "baseline": '"guard-baseline.json"',
        "fail_on": '"churn"',
        "log_format": '"json"',
        "log_target": '"logging"',
        "dump_signal": '"USR1"',
        "metrics": '"otel"',
        "sigterm": "true",
    }
    assert sorted(values) == sorted(option.pyproject for option in _config.OPTIONS)
    root = project(tmp_path, "".join(f"{key} = {value}\n" for key, value in values.items()))
    settings = _pyproject.read(str(root / "pyproject.toml"))
    config = settings.apply(_config.Config())
    for option in _config.OPTIONS:
        assert getattr(config, option.name) != option.default, option.name
    # Paths in the file are the project's: relative to the file, not to the caller.
    assert config.baseline == str(root / "guard-baseline.json")
    assert config.report_path == str(root / "out/r-{pid}.json")


def test_the_start_up_hook_reads_only_the_file_executor_guard_config_names(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, "threshold = 3\n")
    probe = "from executor_guard import _guard; print(_guard.active_guard().config.threshold)"
    # The nearest pyproject.toml is not the hook's business...
    searched = run("-c", probe, cwd=root, env={"EXECUTOR_GUARD": "log"})
    assert searched.stdout.strip() == "10", searched.stderr
    # ...the file the variable names is, under the variables themselves.
    named = {"EXECUTOR_GUARD": "log", "EXECUTOR_GUARD_CONFIG": str(root / "pyproject.toml")}
    assert run("-c", probe, cwd=tmp_path, env=named).stdout.strip() == "3"
    over = {**named, "EXECUTOR_GUARD_THRESHOLD": "7"}
    assert run("-c", probe, cwd=tmp_path, env=over).stdout.strip() == "7"
    bad = {**named, "EXECUTOR_GUARD_CONFIG": str(root / "missing.toml")}
    result = run("-c", "print('ran')", cwd=tmp_path, env=bad)
    assert result.stdout.strip() == "ran"  # the host process runs: unguarded, one line
    assert result.stderr.strip().endswith("missing.toml: no such file; the guard is off")


# -- baselines -------------------------------------------------------------------


def write_baseline(root: Path) -> subprocess.CompletedProcess[str]:
    """Run app.py (warning, whatever the table says) and write the baseline of its report."""
    before = guard(
        "-q", "--mode", "warn", "--fail-on", "never", "--report", "before.json", "app.py",
        cwd=root,
    )  # fmt: skip
    assert before.returncode == 0, before.stderr
    return guard("report", "--write-baseline", "guard-baseline.json", "before.json", cwd=root)


def test_a_baseline_lets_known_sites_pass_after_lines_moved(tmp_path: Path) -> None:
    root = project(tmp_path, 'mode = "raise"\n')
    written = write_baseline(root)
    assert written.returncode == 0, written.stderr
    assert "baseline written to guard-baseline.json: 1 call site, 1 with findings" in (
        written.stdout
    )
    # An unrelated edit above the line moves it down three lines.
    (root / "app.py").write_text("import os\n\n\n" + CHURN)
    unknown = guard("-q", "--fail-on", "churn", "app.py", cwd=root)
    assert unknown.returncode == 1 and "ExecutorChurnError" in unknown.stderr
    known = guard("--baseline", "guard-baseline.json", "--fail-on", "churn", "app.py", cwd=root)
    assert known.returncode == 0, known.stderr
    assert "ExecutorChurnError" not in known.stderr
    assert "baseline guard-baseline.json: covered 1 known call site" in known.stderr


def test_a_baseline_from_pyproject_matches_in_another_checkout(tmp_path: Path) -> None:
    first = project(tmp_path / "laptop", 'fail_on = "churn"\n')
    assert guard("app.py", cwd=first).returncode == 3  # the table's fail_on
    assert write_baseline(first).returncode == 0
    with open(first / "pyproject.toml", "a") as stream:
        stream.write('baseline = "guard-baseline.json"\n')
    ci = tmp_path / "runner" / "work" / "checkout"
    shutil.copytree(first, ci)
    for name in ("before.json",):
        (ci / name).unlink()
    result = guard("app.py", cwd=ci)
    assert result.returncode == 0, result.stderr
    assert "ExecutorChurnWarning" not in result.stderr


def test_new_sites_and_sites_that_got_worse_still_fail(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert write_baseline(root).returncode == 0
    with open(root / "pyproject.toml", "a") as stream:
        stream.write('baseline = "guard-baseline.json"\n')
    (root / "app.py").write_text(WORSE + SECOND)
    result = guard("--fail-on", "any", "--report", "after.json", "app.py", cwd=root)
    assert result.returncode == 3
    assert last_line(result).startswith(
        "executor_guard: exit status 3: 2 call sites with findings (--fail-on any): "
    )
    assert "app.py:6 in handler" in last_line(result)
    assert "app.py:16 in other" in last_line(result)
    assert "(worse than the baseline: nowait_pending new)" in result.stderr
    # The new site is the one that warned; the known one's churn did not.
    assert "ExecutorChurnWarning" in result.stderr and "in other" in result.stderr
    assert "at " + str(root / "app.py") + ":6" not in result.stderr
    # A known site that got worse fails at every level, as a new one does.
    churn_only = guard("report", "--fail-on", "churn", "after.json", cwd=root)
    assert churn_only.returncode == 3
    assert last_line(churn_only) == (
        "executor_guard: exit status 3: 2 call sites with churn (--fail-on churn): "
        "app.py:6 in handler, app.py:16 in other"
    )


def test_report_baseline_counts_the_sites_it_covered(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert write_baseline(root).returncode == 0
    plain = guard("report", "--fail-on", "churn", "before.json", cwd=root)
    assert plain.returncode == 3
    known = guard(
        "report", "--fail-on", "churn", "--baseline", "guard-baseline.json", "before.json",
        cwd=root,
    )  # fmt: skip
    assert known.returncode == 0, known.stderr
    assert known.stdout.splitlines()[:2] == [
        "executor_guard: 12 pools from 1 call site; 0 with findings (mode warn, threshold 10)",
        "baseline guard-baseline.json: covered 1 known call site (1 with findings, which pass)"
        " of its 1",
    ]


def test_an_unreadable_baseline_is_named_where_it_was_set(tmp_path: Path) -> None:
    from_env = guard(
        "app.py", cwd=project(tmp_path / "env"), env={"EXECUTOR_GUARD_BASELINE": "nope.json"}
    )
    from_file = guard("app.py", cwd=project(tmp_path / "file", 'baseline = "nope.json"\n'))
    for result, source in (
        (from_env, "EXECUTOR_GUARD_BASELINE"),
        (from_file, "pyproject.toml: [tool.executor_guard] baseline"),
    ):
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"executor-guard: error: {source}: cannot read the baseline "), line
        assert line.endswith("nope.json: no such file"), line


def test_an_unreadable_baseline_is_status_2_before_the_program_runs(tmp_path: Path) -> None:
    root = project(tmp_path)
    result = guard("--baseline", "nope.json", "app.py", cwd=root)
    assert result.returncode == 2
    assert result.stderr == (
        "executor-guard: error: --baseline: cannot read the baseline nope.json: no such file\n"
    )


# -- report: gating, formats, output -----------------------------------------------


def test_report_fail_on_gates_merged_reports(tmp_path: Path) -> None:
    root = project(tmp_path, "threshold = 10\n")
    (root / "few.py").write_text(CHURN.replace("range(12)", "range(6)"))
    for name in ("a", "b"):
        assert guard("-q", "--report", f"{name}.json", "few.py", cwd=root).returncode == 0
    # Neither process churned alone; the two together built 12 pools at one line.
    alone = guard("report", "--fail-on", "churn", "a.json", cwd=root)
    assert alone.returncode == 0, alone.stderr
    merged = guard("report", "--fail-on", "churn", "a.json", "b.json", cwd=root)
    assert merged.returncode == 3
    assert merged.stderr == (
        "executor_guard: exit status 3: 1 call site with churn (--fail-on churn): "
        "few.py:5 in handler\n"
    )
    assert guard("report", "--fail-on", "any", "missing.json", cwd=root).returncode == 2


def test_report_limit_all_output_and_markdown(tmp_path: Path) -> None:
    sites = "".join(
        f"def f{n}():\n    ThreadPoolExecutor(1).shutdown()\n\n\nfor _ in range(10):\n    f{n}()\n"
        for n in range(3)
    )
    root = project(tmp_path, app="from concurrent.futures import ThreadPoolExecutor\n" + sites)
    assert guard("-q", "--report", "r.json", "app.py", cwd=root).returncode == 0
    limited = guard("report", "--limit", "1", "r.json", cwd=root).stdout
    assert limited.count("\n[churn]") == 1
    assert "... and 2 more sites with findings (see the JSON report, or --all)" in limited
    assert guard("report", "--all", "r.json", cwd=root).stdout.count("\n[churn]") == 3
    result = guard("report", "--format", "markdown", "-o", "summary.md", "r.json", cwd=root)
    assert (result.returncode, result.stdout) == (0, "")
    markdown = (root / "summary.md").read_text()
    assert markdown.startswith("### executor_guard: 30 pools from 3 call sites; 3 with findings")
    assert "| call site | findings | created | peak live | shutdown |\n|---|---|---|---|---|" in (
        markdown
    )
    assert "| `app.py:3` in `f0` | churn | 10 | 1 | wait 10 |" in markdown
    assert markdown.count("<details>") == 3
    bad = guard("report", "-o", str(root / "no" / "dir.md"), "r.json", cwd=root)
    assert bad.returncode == 2 and bad.stderr.startswith("executor-guard report: error: -o: ")


def test_report_output_files_are_written_atomically_for_their_owner_only(tmp_path: Path) -> None:
    """Regression: ``report -o`` wrote through a plain open(): world-readable under
    umask 022, through an existing symlink, and half-written if interrupted."""
    root = project(tmp_path)
    assert guard("-q", "--report", "r.json", "app.py", cwd=root).returncode == 0
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("not ours\n")
    (root / "page.html").symlink_to(elsewhere)
    for name, form in [("page.html", "html"), ("summary.md", "markdown"), ("out.json", "json")]:
        result = guard("report", "--format", form, "-o", name, "r.json", cwd=root)
        assert result.returncode == 0, result.stderr
        written = root / name
        assert not written.is_symlink()
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert not list(root.glob(f".{name}.*.tmp"))
    assert elsewhere.read_text() == "not ours\n"
    assert (root / "page.html").read_text().startswith("<!DOCTYPE html>")


# -- report --diff ----------------------------------------------------------------


def test_diff_of_the_bundled_incident_and_its_fix(tmp_path: Path) -> None:
    root = project(tmp_path)
    for name in ("incident.py", "incident_fixed.py"):
        shutil.copy(ROOT / "examples" / name, root / name)
    guard("-q", "--report", "before.json", "incident.py", cwd=root)
    guard("-q", "--report", "after.json", "incident_fixed.py", cwd=root)
    result = guard("report", "--diff", "--fail-on", "churn", "before.json", "after.json", cwd=root)
    assert result.returncode == 0, result.stderr
    assert "gone (1)\n    [churn, nowait_pending] incident.py:25 in job_event_listener" in (
        result.stdout
    )
    assert "new (1)\n    [no findings] incident_fixed.py:11 in <module>: created 1" in (
        result.stdout
    )
    assert "verdict: better (gone 1, new 1, worse 0, better 0, unchanged 0)" in result.stdout
    backwards = guard(
        "report", "--diff", "--fail-on", "churn", "after.json", "before.json", cwd=root
    )
    assert backwards.returncode == 3
    assert backwards.stderr == (
        "executor_guard: exit status 3: before.json is worse than after.json (--fail-on churn): "
        "new incident.py:25 in job_event_listener\n"
    )


def test_diff_matches_a_site_across_moved_lines_better_and_worse(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert guard("-q", "--report", "before.json", "app.py", cwd=root).returncode == 0
    (root / "app.py").write_text("# moved\n" + CHURN.replace("range(12)", "range(3)"))
    assert guard("-q", "--report", "better.json", "app.py", cwd=root).returncode == 0
    (root / "app.py").write_text(WORSE)  # `import time` moved the site down a line
    assert guard("-q", "--report", "worse.json", "app.py", cwd=root).returncode == 0
    better = guard("report", "--diff", "--format", "json", "before.json", "better.json", cwd=root)
    data = json.loads(better.stdout)
    assert [len(data[k]) for k in ("gone", "new", "better", "worse")] == [0, 0, 1, 0]
    entry = data["better"][0]
    assert (entry["before"]["line"], entry["line"]) == (5, 6)
    assert (entry["lost"], entry["before"]["created"], entry["created"]) == (["churn"], 12, 3)
    assert data["worse_at"] == {"churn": False, "any": False}
    worse = guard("report", "--diff", "--fail-on", "any", "before.json", "worse.json", cwd=root)
    assert worse.returncode == 3
    assert "worse (1)\n    [churn, nowait_pending] app.py:6 in handler: created 12 -> 12" in (
        worse.stdout
    )
    assert last_line(worse).endswith("(--fail-on any): worse app.py:6 in handler")
    # churn was there before: at the churn level the new finding does not fail.
    churn = guard("report", "--diff", "--fail-on", "churn", "before.json", "worse.json", cwd=root)
    assert churn.returncode == 0


# -- the pytest plugin ---------------------------------------------------------------

TESTS = """\
from concurrent.futures import ThreadPoolExecutor


def test_churns():
    for _ in range(12):
        ThreadPoolExecutor(1).shutdown()
"""


def test_the_plugin_prints_one_header_line_and_reads_the_table(tmp_path: Path) -> None:
    root = project(tmp_path, "threshold = 20\n", app="")
    (root / "test_demo.py").write_text(TESTS)
    args = ("-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist")
    quiet = run(*args, cwd=root)
    assert quiet.returncode == 0, quiet.stdout
    assert "executor_guard:" not in quiet.stdout  # not enabled: no header line
    enabled = run(*args, "--executor-guard", cwd=root)
    assert enabled.returncode == 0, enabled.stdout  # 12 pools < the table's 20
    headers = [line for line in enabled.stdout.splitlines() if line.startswith("executor_guard:")]
    assert headers == [
        "executor_guard: mode fail, threshold 20, baseline none, config pyproject.toml"
    ]
    lowered = run(*args, "--executor-guard", "--executor-guard-threshold", "10", cwd=root)
    assert lowered.returncode == 1, lowered.stdout


def test_the_plugin_lets_a_baseline_pass_and_refuses_a_bad_table(tmp_path: Path) -> None:
    root = project(tmp_path, 'baseline = "guard-baseline.json"\n', app="")
    (root / "test_demo.py").write_text(TESTS)
    args = ("-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "--executor-guard")
    (root / "guard-baseline.json").write_text('{"executor_guard_baseline": 1, "sites": []}')
    failing = run(*args, cwd=root)
    assert failing.returncode == 1, failing.stdout
    assert "baseline guard-baseline.json (0 call sites), config pyproject.toml" in failing.stdout
    (root / "pyproject.toml").write_text("[tool.executor_guard]\nthreshold = 10\n")
    guarded = guard(
        "-q", "--report", "r.json", "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist",
        cwd=root,
    )  # fmt: skip
    assert guarded.returncode == 0
    written = guard("report", "--write-baseline", "guard-baseline.json", "r.json", cwd=root)
    assert written.returncode == 0, written.stderr
    # Committed and shared, unlike a report: readable like any project file.
    assert stat.S_IMODE((root / "guard-baseline.json").stat().st_mode) == 0o644
    (root / "pyproject.toml").write_text(
        '[tool.executor_guard]\nbaseline = "guard-baseline.json"\n'
    )
    passing = run(*args, cwd=root)
    assert passing.returncode == 0, passing.stdout
    assert "baseline guard-baseline.json (1 call site), config pyproject.toml" in passing.stdout
    (root / "pyproject.toml").write_text("[tool.executor_guard]\nthreshold = 1\n")
    bad = run(*args, cwd=root)
    assert bad.returncode == 4  # pytest's usage error
    assert (
        "ERROR: executor_guard: pyproject.toml: [tool.executor_guard] threshold: invalid value 1"
        in bad.stderr
    )
