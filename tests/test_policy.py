"""What each mode does when a call site crosses the threshold."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import executor_guard
from executor_guard import ExecutorChurnWarning, _hooks
from executor_guard._config import Config
from executor_guard._policy import Policy, _milestone_after

from .helpers import Clock, Harness, line_of


def churn_once() -> None:
    ThreadPoolExecutor(1).shutdown()  # policy site


SITE_LINE = line_of(churn_once, "policy site")


def run_script(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, *args, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


APP = """
    import executor_guard
    from concurrent.futures import ThreadPoolExecutor
    executor_guard.install(mode="warn", threshold=3)

    def handler():
        ThreadPoolExecutor(1).shutdown()  # line 7

    for _ in range(6):
        handler()
    print("finished")
"""


def test_warn_mode_is_shown_once_by_default_at_the_call_site(tmp_path: Path) -> None:
    result = run_script(tmp_path, APP)
    assert result.returncode == 0
    assert result.stdout == "finished\n"
    assert result.stderr.count("ExecutorChurnWarning") == 1
    assert f"{tmp_path / 'app.py'}:7: ExecutorChurnWarning: ThreadPoolExecutor created 3 times" in (
        result.stderr
    )


@pytest.mark.parametrize(
    "option", ["error::executor_guard.ExecutorChurnWarning", "error::ResourceWarning"]
)
def test_warn_mode_obeys_W_error_for_our_category(tmp_path: Path, option: str) -> None:
    # Python itself rejects the first spelling at start-up ("Invalid -W option
    # ignored": site-packages is not importable yet); install() applies it.
    result = run_script(tmp_path, APP, "-W", option)
    assert result.returncode == 1
    assert "finished" not in result.stdout
    assert 'app.py", line 7, in handler' in result.stderr
    assert (
        result.stderr.rstrip()
        .splitlines()[-1]
        .startswith(
            "executor_guard.exceptions.ExecutorChurnWarning: ThreadPoolExecutor created 3 times"
        )
    )


def test_warn_mode_obeys_the_users_ignore_filter(tmp_path: Path) -> None:
    result = run_script(tmp_path, APP, "-W", "ignore::ResourceWarning")
    assert result.returncode == 0
    assert result.stderr == ""


def test_a_warning_turned_into_an_error_refuses_that_pool_and_nothing_else() -> None:
    with executor_guard.guarded(threshold=3) as guard, warnings.catch_warnings():
        warnings.simplefilter("error", ExecutorChurnWarning)
        churn_once()
        churn_once()
        with pytest.raises(ExecutorChurnWarning):
            churn_once()
        churn_once()  # the "error" filter fires once per site: later pools are built
    site = guard.report().to_dict()["sites"][0]
    assert (site["created"], site["refused"]) == (3, 1)
    assert site["shutdown"]["wait"] == 3
    assert site["shutdown"]["open"] == 0


def test_log_mode_emits_json_events_at_growing_milestones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with executor_guard.guarded(mode="log", log_format="json"):
        for _ in range(120):
            churn_once()
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["created"] for e in events] == [10, 20, 50, 100]
    first = events[0]
    assert first["event"] == "executor_churn"
    assert first["level"] == "warning"
    assert first["site"] == f"{__file__}:{SITE_LINE} in churn_once"
    assert (first["file"], first["line"], first["function"]) == (__file__, SITE_LINE, "churn_once")
    assert first["shutdown"] == {"context": 0, "wait": 9, "nowait": 0, "never": 0, "open": 1}
    # The pool being built counts everywhere `created` counts it (it once missed here).
    assert first["classes"] == {"ThreadPoolExecutor": 10}
    assert first["threads"] == {threading.current_thread().name: 10}
    assert first["findings"] == ["churn"]
    assert first["stack"][-1] == f"{__file__}:{SITE_LINE} in churn_once"
    assert first["process"]["threads"] >= 1
    assert first["process"]["rss_bytes"] > 0
    assert list(first)[:4] == ["event", "timestamp", "level", "logger"]


def test_the_event_counts_the_pool_being_built_within_the_thread_name_cap(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The crossing's own pool goes to ``(other)`` once a site has all the thread
    names it keeps, as the registry counts every other pool."""
    from executor_guard._registry import MAX_NAMES, OTHER

    with executor_guard.guarded(mode="log", log_format="json", threshold=MAX_NAMES + 1):
        for n in range(MAX_NAMES):
            worker = threading.Thread(target=churn_once, name=f"worker-{n}")
            worker.start()
            worker.join()
        churn_once()  # the crossing, from a thread name the site has no room for
    (event,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert event["created"] == MAX_NAMES + 1
    assert len(event["threads"]) == MAX_NAMES + 1
    assert event["threads"][OTHER] == 1
    assert threading.current_thread().name not in event["threads"]


def test_log_mode_console_format_prints_the_stack_under_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with executor_guard.guarded(mode="log"):
        for _ in range(10):
            churn_once()
    err = capsys.readouterr().err
    head, *stack = err.splitlines()
    assert "executor_churn" in head
    assert "created=10" in head
    assert stack[-1].strip() == f"{__file__}:{SITE_LINE} in churn_once"


def test_log_target_logging_routes_events_to_the_stdlib_logger(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    guard = executor_guard.guarded(mode="log", log_format="json", log_target="logging")
    with caplog.at_level(logging.WARNING, logger="executor_guard"), guard:
        for _ in range(10):
            churn_once()
    assert capsys.readouterr().err == ""
    records = [r for r in caplog.records if r.name == "executor_guard"]
    assert len(records) == 1
    assert json.loads(records[0].getMessage())["created"] == 10


def test_log_mode_does_not_touch_the_hosts_structlog_or_logging_configuration() -> None:
    import structlog

    before = structlog.get_config()
    root_handlers = list(logging.getLogger().handlers)
    with executor_guard.guarded(mode="log", log_format="json"):
        for _ in range(10):
            churn_once()
    assert structlog.get_config() == before
    assert logging.getLogger().handlers == root_handlers


def test_ignored_sites_are_recorded_but_never_act(recwarn: pytest.WarningsRecorder) -> None:
    warnings.simplefilter("always")
    with executor_guard.guarded(ignore=["*test_policy.py"]) as guard:
        for _ in range(15):
            churn_once()
    assert not [w for w in recwarn if issubclass(w.category, ExecutorChurnWarning)]
    site = guard.report().to_dict()["sites"][0]
    assert site["created"] == 15
    assert site["ignored"] is True
    assert site["findings"] == []


@pytest.mark.parametrize(
    "pattern",
    [
        "*/test_policy.py",
        f"*test_policy.py:{SITE_LINE}",
        "tests.test_policy.churn_once",
        "test_policy.py",
    ],
)
def test_ignore_patterns_match_path_line_path_and_module_function(pattern: str) -> None:
    with executor_guard.guarded(ignore=[pattern]) as guard:
        for _ in range(10):
            churn_once()
    assert guard.report().to_dict()["sites"][0]["ignored"] is True


def test_warn_mode_adds_a_default_filter_that_user_filters_still_override() -> None:
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("ignore", category=ResourceWarning)  # Python's stock entry
        warnings.filterwarnings("ignore", category=ExecutorChurnWarning, module="quiet")
        with executor_guard.guarded():
            entries = [f for f in warnings.filters if f[2] is ExecutorChurnWarning]
            assert [f[0] for f in entries] == ["ignore", "default"]
            ours = warnings.filters.index(entries[1])
            assert warnings.filters[ours + 1][2] is ResourceWarning
        assert [f[0] for f in warnings.filters if f[2] is ExecutorChurnWarning] == ["ignore"]


def test_internal_errors_are_reported_once_and_never_reach_the_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A failure inside our own code: `int(pool, site, ...)` raises TypeError
    # where the record would be made, with only our frames on the way.
    with executor_guard.guarded():
        monkeypatch.setattr(_hooks, "_new_record", int)
        for _ in range(3):
            churn_once()
    err = capsys.readouterr().err
    assert err.count("executor_guard: internal error") == 1
    assert "TypeError" in err


def test_an_exception_from_the_programs_own_code_is_never_swallowed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a SIGALRM handler raises while a hook runs reaches the program unchanged."""

    class Timeout(Exception):
        pass

    def handler_raises(*args: object) -> None:  # stands in for the program's handler
        raise Timeout("deadline")

    with executor_guard.guarded():
        monkeypatch.setattr(_hooks, "_new_record", handler_raises)
        with pytest.raises(Timeout, match="deadline"):
            churn_once()
    assert "internal error" not in capsys.readouterr().err


# -- which attempts are churn ---------------------------------------------------------


def test_threshold_counts_over_the_process_lifetime_without_a_window() -> None:
    clock = Clock()
    harness = Harness(Config(threshold=3), clock)
    crossings = []
    for _ in range(5):
        clock.now += 3600
        crossings.append(harness.create(Pool())[1])
    assert [c is not None for c in crossings] == [False, False, True, False, False]


def test_window_counts_only_recent_creations() -> None:
    clock = Clock()
    harness = Harness(Config(threshold=3, window=10.0), clock)
    kept = []
    for _ in range(4):  # one creation every 6 s: never 3 within 10 s
        clock.now += 6
        kept.append(pool := Pool())
        assert harness.create(pool)[1] is None
    assert harness.site()["churn"] is False
    clock.now += 0.5  # a third creation within 10 s of the two before it
    kept.append(pool := Pool())
    crossing = harness.create(pool)[1]
    assert crossing is not None and crossing.first
    site = harness.site()
    assert site["churn"] is True
    assert site["first_at"] == pytest.approx(6.0)
    assert site["last_at"] == pytest.approx(24.5)


def test_raise_mode_refuses_from_the_threshold_on_and_creates_nothing() -> None:
    harness = Harness(Config(mode="raise", threshold=3))
    kept = [Pool() for _ in range(5)]
    results = [harness.create(pool) for pool in kept]
    assert [r is not None for r, _ in results] == [True, True, False, False, False]
    assert all(c is not None and c.refused for _, c in results[2:])
    site = harness.site()
    assert (site["created"], site["refused"]) == (2, 3)


def test_milestones_grow_one_two_five() -> None:
    marks, count = [], 0
    for _ in range(7):
        count = _milestone_after(count, 10)
        marks.append(count)
    assert marks == [10, 20, 50, 100, 200, 500, 1000]
    assert _milestone_after(10, 10) == 20
    assert _milestone_after(1_000_000, 10) == 2_000_000


def test_log_mode_acts_at_the_threshold_and_at_each_milestone() -> None:
    harness = Harness(Config(mode="log", threshold=10))
    kept = [Pool() for _ in range(120)]
    acted = [i + 1 for i, pool in enumerate(kept) if harness.create(pool)[1] is not None]
    assert acted == [10, 20, 50, 100]


def test_a_lower_threshold_applies_to_sites_already_counting() -> None:
    harness = Harness(Config(threshold=10))
    kept = [Pool() for _ in range(6)]
    assert [harness.create(pool)[1] for pool in kept[:4]] == [None] * 4
    harness.policy = Policy(Config(threshold=5))
    for site in harness.registry.sites.values():
        harness.policy.configure_site(site)
    assert harness.create(kept[4])[1] is not None  # the 5th creation crosses 5
    assert harness.create(kept[5])[1] is None  # warn mode acts once per site


def test_a_window_set_later_counts_from_then_on_and_can_be_dropped_again() -> None:
    clock = Clock()
    harness = Harness(Config(threshold=3), clock)
    kept = [Pool() for _ in range(6)]

    def reconfigure(config: Config) -> None:
        harness.policy = Policy(config)
        for site in harness.registry.sites.values():
            harness.policy.configure_site(site)

    harness.create(kept[0])
    reconfigure(Config(threshold=3, window=5.0))
    clock.now += 1
    assert harness.create(kept[1])[1] is None
    clock.now += 1
    assert harness.create(kept[2])[1] is None  # 3 creations, but 2 in the window
    clock.now += 1
    assert harness.create(kept[3])[1] is not None
    reconfigure(Config(threshold=3))
    harness.create(kept[4])
    assert harness.site()["created"] == 5


class Pool:
    """Any weak-referenceable object stands in for a pool."""


def test_installing_again_with_the_same_options_keeps_the_sites_policy_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    looks: list[int] = []
    check = Policy.check

    def counting(self: Policy, site: object, attempt: int, now: float) -> object:
        looks.append(attempt)
        return check(self, site, attempt, now)  # type: ignore[arg-type]

    monkeypatch.setattr(Policy, "check", counting)
    executor_guard.install(mode="log", threshold=1000)
    try:
        for _ in range(3):
            churn_once()
        assert len(looks) == 1  # the first look moves the next one to the threshold
        executor_guard.uninstall()
        executor_guard.install(mode="log", threshold=1000)
        churn_once()
        assert len(looks) == 1  # same options: the site's state still holds
        executor_guard.install(mode="log", threshold=500)
        churn_once()
        assert len(looks) == 2  # changed options: looked at again
    finally:
        executor_guard.uninstall()
