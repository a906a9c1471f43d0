"""The pytest plugin, driven through pytester in subprocess mode."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")

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

FIXTURES = """
    import pytest
    from concurrent.futures import ThreadPoolExecutor

    @pytest.fixture
    def churn_in_setup():
        for _ in range(11):
            ThreadPoolExecutor(1).shutdown(wait=False)  # setup site
        yield

    @pytest.fixture
    def churn_in_teardown():
        yield
        for _ in range(11):
            ThreadPoolExecutor(1).shutdown()  # teardown site

    def test_setup(churn_in_setup):
        pass

    def test_teardown(churn_in_teardown):
        pass
"""

ACROSS = """
    import pytest
    from concurrent.futures import ThreadPoolExecutor

    def one_pool_per_call():
        pool = ThreadPoolExecutor(1)  # per-call site
        try:
            return pool.submit(int).result()
        finally:
            pool.shutdown()

    @pytest.mark.parametrize("n", range(15))
    def test_uses_helper(n):
        assert one_pool_per_call() == 0
"""


def test_inactive_by_default_nothing_patched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        SUITE
        + """
    def test_not_patched():
        assert not hasattr(ThreadPoolExecutor.__init__, "__wrapped__")
    """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*executor_guard*")


def test_a_test_that_churns_fails_with_the_site_count_modes_and_stack(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("--executor-guard", "-W", "error")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*executor_guard: 1 call site created pools repeatedly during the call of "
            "test_a_test_that_churns_fails_with_the_site_count_modes_and_stack.py::test_body_churns"
            " (threshold 10 per test)",
            "[[]churn[]] *.py:5 in make_pool",
            "    created 12 (ThreadPoolExecutor 12)*",
            "    shutdown: context 12",
            "     > *.py:10 in test_body_churns",
            "     > *.py:5 in make_pool",
            "          with ThreadPoolExecutor(max_workers=1) as pool:  # helper site",
        ]
    )
    result.stdout.no_fnmatch_line("*PluggyTeardownRaisedWarning*")


def test_churn_in_fixtures_fails_their_setup_and_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FIXTURES)
    result = pytester.runpytest_subprocess("--executor-guard")
    result.assert_outcomes(passed=1, errors=2)  # test_teardown's call passed
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_setup*",
            "*during the setup of *::test_setup*",
            "[[]churn[]] *.py:7 in churn_in_setup",
            "*ERROR at teardown of test_teardown*",
            "*during the teardown of *::test_teardown*",
            "[[]churn[]] *.py:14 in churn_in_teardown",
        ]
    )


@pytest.mark.parametrize(
    "enable",
    [
        ("cli", "--executor-guard"),
        ("ini", "[pytest]\nexecutor_guard = true\n"),
        ("env", "--executor-guard"),
    ],
)
def test_enabled_by_flag_ini_or_pytest_addopts(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, enable: tuple[str, str]
) -> None:
    pytester.makepyfile(SUITE)
    how, value = enable
    args: list[str] = []
    if how == "cli":
        args.append(value)
    elif how == "ini":
        pytester.makefile(".ini", pytest=value.split("\n", 1)[1].join(["[pytest]\n", ""]))
    else:
        monkeypatch.setenv("PYTEST_ADDOPTS", value)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(failed=1, passed=1)


@pytest.mark.parametrize(("value", "mode"), [("1", "log"), ("log", "log"), ("warn", "warn")])
def test_executor_guard_in_the_environment_does_not_enable_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str, mode: str
) -> None:
    """The variable asks for the process guard in its mode, not for failing tests.

    The last test reads the process guard's report: it holds the pools of the
    earlier tests, so no test suspended it.
    """
    pytester.makepyfile(
        SUITE
        + f"""
    def test_the_process_guard_saw_every_pool():
        import executor_guard
        report = executor_guard.report()
        assert report.to_dict()["config"]["mode"] == {mode!r}
        site = report.site(__file__, 5)
        assert site["created"] == 12
    """
    )
    monkeypatch.setenv("EXECUTOR_GUARD", value)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3, warnings=1 if mode == "warn" else 0)


def test_threshold_and_mode_from_ini_with_the_command_line_winning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SUITE)
    pytester.makeini("[pytest]\nexecutor_guard = true\nexecutor_guard_threshold = 20\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=2)  # 12 < 20
    result = pytester.runpytest_subprocess("--executor-guard-threshold", "5")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*(threshold 5 per test)*"])


def test_raise_mode_fails_at_the_constructor_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("--executor-guard", "--executor-guard-mode", "raise")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*with ThreadPoolExecutor(max_workers=1) as pool:  # helper site*",
            "E*ExecutorChurnError: refused to create another ThreadPoolExecutor*",
        ]
    )


def test_warn_mode_reports_through_pytests_warning_capture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("--executor-guard", "--executor-guard-mode", "warn")
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*ExecutorChurnWarning: ThreadPoolExecutor created 10 times*"])
    strict = pytester.runpytest_subprocess(
        "--executor-guard",
        "--executor-guard-mode",
        "warn",
        "-W",
        "error::executor_guard.ExecutorChurnWarning",
    )
    strict.assert_outcomes(failed=1, passed=1)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            ("cli", "--executor-guard-threshold=ten"),
            "executor_guard: --executor-guard-threshold: invalid value 'ten'*",
        ),
        (
            ("cli", "--executor-guard-mode=loud"),
            "executor_guard: --executor-guard-mode: invalid value 'loud'*",
        ),
        (
            ("ini", "executor_guard_threshold = 1"),
            "executor_guard: ini option executor_guard_threshold: invalid value '1'*",
        ),
        (
            ("ini", "executor_guard_mode = shout"),
            "executor_guard: ini option executor_guard_mode: invalid value 'shout'*",
        ),
        (
            ("ini", "executor_guard_fail_session = maybe"),
            "executor_guard: ini option executor_guard_fail_session: invalid value 'maybe'*",
        ),
        (
            ("env", "EXECUTOR_GUARD_THRESHOLD=x"),
            "executor_guard: EXECUTOR_GUARD_THRESHOLD: invalid value 'x'*",
        ),
    ],
)
def test_a_bad_value_names_its_source(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setup: tuple[str, str], message: str
) -> None:
    pytester.makepyfile(SUITE)
    how, value = setup
    args = ["--executor-guard"]
    if how == "cli":
        args.append(value)
    elif how == "ini":
        pytester.makeini(f"[pytest]\n{value}\n")
    else:
        name, _, raw = value.partition("=")
        monkeypatch.setenv(name, raw)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_a_bad_enable_switch_in_ini_names_the_option(pytester: pytest.Pytester) -> None:
    """Regression: switches were pytest "bool" ini options, refused by pytest as
    "invalid truth value" without naming the option."""
    pytester.makepyfile(SUITE)
    pytester.makeini("[pytest]\nexecutor_guard = maybe\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: executor_guard: ini option executor_guard: invalid value 'maybe'*"]
    )


def test_churn_across_tests_is_summarised_with_the_tests_that_hit_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(ACROSS)
    result = pytester.runpytest_subprocess("--executor-guard")
    result.assert_outcomes(passed=15)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*= executor_guard: call sites that churn across tests =*",
            "*.py:5 in one_pool_per_call: 15 pools over 15 tests (threshold 10)",
            "        1  *::test_uses_helper[[]0[]]",
            "    ... and 5 more tests",
        ]
    )
    failing = pytester.runpytest_subprocess("--executor-guard", "--executor-guard-fail-session")
    failing.assert_outcomes(passed=15)
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines(
        ["executor_guard: failing the run (--executor-guard-fail-session)"]
    )


def test_the_marker_sets_threshold_and_allows_sites(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        SUITE
        + """
    @pytest.mark.executor_guard(threshold=20)
    def test_higher_threshold():
        for _ in range(12):
            make_pool()

    @pytest.mark.executor_guard(allow="*.py:5")
    def test_allowed_site():
        for _ in range(12):
            make_pool()

    @pytest.mark.executor_guard(threshold=3)
    def test_marker_alone_guards_the_test():
        for _ in range(3):
            make_pool()
    """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_marker_alone_guards_the_test*"])


def test_the_fixture_inspects_and_asserts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        SUITE
        + """
    def test_counts(executor_guard):
        make_pool(); make_pool()
        assert executor_guard.pools == 2
        [site] = executor_guard.sites
        assert site["function"] == "make_pool" and site["shutdown"]["context"] == 2
        executor_guard.assert_no_churn()

    @pytest.mark.executor_guard(threshold=2)
    def test_assert_no_churn_fails(executor_guard):
        make_pool(); make_pool()
        executor_guard.assert_no_churn()

    def test_unpatched_after_a_guarded_test():
        assert not hasattr(ThreadPoolExecutor.__init__, "__wrapped__")
    """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["E*AssertionError: 1 call site created pools repeatedly:*"])


def test_xdist_workers_are_guarded_and_the_summary_merges(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_across=ACROSS, test_suite=SUITE)
    result = pytester.runpytest_subprocess("--executor-guard", "-n", "2")
    result.assert_outcomes(passed=16, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*= executor_guard: call sites that churn across tests =*",
            "*test_across.py:5 in one_pool_per_call: 15 pools over 15 tests (threshold 10)",
        ]
    )


def test_every_per_test_option_of_the_table_is_a_flag_and_an_ini_key(
    pytester: pytest.Pytester,
) -> None:
    from executor_guard import _config

    result = pytester.runpytest_subprocess("--help")
    for option in _config.OPTIONS:
        if option.flag is None:
            continue
        flag = "--executor-guard-" + option.flag[2:]
        ini = "executor_guard_" + option.name
        if option.per_test:
            result.stdout.fnmatch_lines([f"*{flag}*", f"*{ini} *"])
        elif option.name != "mode":  # the plugin's own mode (fail, warn, ...) has that flag
            result.stdout.no_fnmatch_line(f"*{flag}*")


def test_per_test_options_come_from_flags_ini_and_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import json

        import pytest

        def test_config(executor_guard):
            print("CONFIG", json.dumps(executor_guard.report().to_dict()["config"]))

        @pytest.mark.executor_guard(allow="*/generated/*")
        def test_marker_adds_to_the_ignored_sites(executor_guard):
            print("IGNORE", json.dumps(executor_guard.report().to_dict()["config"]["ignore"]))
        """
    )
    pytester.makeini("[pytest]\nexecutor_guard_ignore =\n    */vendor/*\n    app.jobs.*\n")
    monkeypatch.setenv("EXECUTOR_GUARD_STACK_DEPTH", "4")
    monkeypatch.setenv("EXECUTOR_GUARD_WINDOW", "5")
    result = pytester.runpytest_subprocess(
        "-s", "--executor-guard-threshold", "7", "--executor-guard-window", "30"
    )
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    printed = {
        key: json.loads(found.group(1))
        for key, found in (
            ("CONFIG", re.search(r"CONFIG (\{.*\})", out)),
            ("IGNORE", re.search(r"IGNORE (\[.*\])", out)),
        )
        if found is not None
    }
    expected: dict[str, object] = {
        "mode": "log",
        "threshold": 7,
        "window": 30.0,
        "stack_depth": 4,
        "ignore": ["*/vendor/*", "app.jobs.*"],
    }
    assert expected == {key: printed["CONFIG"][key] for key in expected}
    expected_ignore = ["*/vendor/*", "app.jobs.*", "*/generated/*"]
    assert expected_ignore == printed["IGNORE"]
    # Not enabled for the run (only the fixture and the marker guard tests):
    # a bad variable is ignored with a line in the header, not a usage error.
    monkeypatch.setenv("EXECUTOR_GUARD_LOG_FORMAT", "xml")
    ignored = pytester.runpytest_subprocess()
    ignored.assert_outcomes(passed=2)
    ignored.stdout.fnmatch_lines(
        [
            "executor_guard: EXECUTOR_GUARD_LOG_FORMAT: invalid value 'xml'*; "
            "the pytest plugin uses the default"
        ]
    )
    bad = pytester.runpytest_subprocess("--executor-guard")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: executor_guard: EXECUTOR_GUARD_LOG_FORMAT: invalid value*"])


#: A process guard installed before any test, as the launcher or the
#: environment would have it; the session's end prints its report's totals.
PROCESS_GUARD = """
    import executor_guard

    executor_guard.install(mode="log", threshold=1000)

    def pytest_unconfigure(config):
        report = executor_guard.report().to_dict()
        sites = {f"{s['function']}:{s['line']}": s["created"] for s in report["sites"]}
        print("PROCESS", sorted(sites.items()))
"""


def test_under_a_process_guard_per_test_counts_are_its_own_and_it_sees_every_pool(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(PROCESS_GUARD)
    pytester.makepyfile(
        FIXTURES
        + """
    from concurrent.futures import ThreadPoolExecutor as Pool

    def make_pool():
        with Pool(max_workers=1) as pool:
            return pool.submit(int).result()

    def test_warm_up():  # the process guard has seen 9 at this site before the next test
        for _ in range(9):
            make_pool()

    def test_counts_only_its_own(executor_guard):
        make_pool(); make_pool()
        assert executor_guard.pools == 2
        executor_guard.clear()
        make_pool()
        assert [s["created"] for s in executor_guard.sites] == [1]
        executor_guard.assert_no_churn()
    """
    )
    result = pytester.runpytest_subprocess("--executor-guard", "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=2)  # 9 + 3 at one site: no test made 10
    result.stdout.fnmatch_lines(
        [
            "*during the setup of *::test_setup (threshold 10 per test)*",
            "[[]churn[]] *.py:7 in churn_in_setup",
            "    created 11 (ThreadPoolExecutor 11)*",
            "    shutdown: nowait 11",
            "*during the teardown of *::test_teardown*",
        ]
    )
    # The process guard stayed active through every test: each pool once.
    result.stdout.fnmatch_lines(
        [
            "PROCESS [[]('churn_in_setup:7', 11), ('churn_in_teardown:14', 11), "
            "('make_pool:25', 12)[]]"
        ]
    )


def test_under_a_process_guard_warn_mode_warns_after_the_phase(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PROCESS_GUARD)
    pytester.makepyfile(SUITE)
    args = ["--executor-guard", "--executor-guard-mode", "warn"]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*ExecutorChurnWarning: ThreadPoolExecutor created 12 times at *.py:5 in make_pool "
            "during the call of *::test_body_churns (threshold 10 per test)*"
        ]
    )
    strict = pytester.runpytest_subprocess(
        *args, "-W", "error::executor_guard.ExecutorChurnWarning"
    )
    strict.assert_outcomes(failed=1, passed=1)


def test_under_a_process_guard_raise_mode_fails_the_phase(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PROCESS_GUARD)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess("--executor-guard", "--executor-guard-mode", "raise")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*1 call site created pools repeatedly during the call of*"])


def test_under_a_process_guard_an_unguarded_test_between_two_is_nobodys(
    pytester: pytest.Pytester,
) -> None:
    """Pools of a test the plugin does not guard are not counted for the next one."""
    pytester.makeconftest(PROCESS_GUARD)
    pytester.makepyfile(
        SUITE
        + """
    def test_first(executor_guard):
        make_pool()

    def test_unguarded_churn():
        for _ in range(12):
            make_pool()

    @pytest.mark.executor_guard
    def test_after_it(executor_guard):
        assert executor_guard.pools == 0
    """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=5)
