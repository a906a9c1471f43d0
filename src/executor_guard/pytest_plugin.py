"""The pytest plugin: fail the test that churns pools, summarise the session.

Registered through the ``pytest11`` entry point and inactive (nothing patched)
unless enabled by ``--executor-guard``, the ini option ``executor_guard =
true``, or the ``EXECUTOR_GUARD`` environment variable; a test that uses the
``executor_guard`` fixture or marker is guarded on its own.

Each guarded test gets a registry of its own for its setup, call and teardown
phases. After each phase, a call site that crossed the threshold *in this test*
fails the test in that phase, with the site, count, shutdown modes and creation
stack in the failure text: churn inside a fixture fails the fixture's setup or
teardown, not the test body. Across the session, sites are also counted over
all tests, so a helper that builds one pool per call, called once per test,
shows up in the terminal summary with the tests that hit it
(``--executor-guard-fail-session`` makes that fail the run).

Options are read off the same table as the launcher's (``_config.OPTIONS``):
each per-test option of the guard (threshold, window, stack depth, ignore,
log format and target) is ``--executor-guard-FLAG``, the ini key
``executor_guard_NAME`` and its environment variable. Precedence: command
line, then ini, then environment; a bad value names its source. Works with
pytest-xdist: every worker is guarded and sends its counts
to the controller, which prints the summary.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any, Optional

import pytest

from . import _config
from .exceptions import ConfigError

PLUGIN_MODES = ("fail", "warn", "raise", "log")
_DATA = "executor_guard"
_STASH: pytest.StashKey[_Plugin] = pytest.StashKey()
_TEST_GUARD: pytest.StashKey[Any] = pytest.StashKey()


def _plugin_mode(value: object, source: str) -> str:
    return _config.parse_choice(value, source, PLUGIN_MODES)


def _plugin_mode_variable(value: object, source: str) -> str:
    """``EXECUTOR_GUARD=warn`` and ``raise`` carry over; any other value means ``fail``."""
    text = str(value).strip().lower()
    return text if text in ("warn", "raise") else "fail"


def _enabled_variable(value: object, source: str) -> bool:
    return True  # any value that is not blank or 0 (the row's unset) switches the guard on


class _Spelling:
    """An option as the plugin spells it: a command-line flag and an ini key."""

    __slots__ = ("flag", "ini", "option")

    def __init__(self, option: _config.Option, flag: str, ini: str) -> None:
        self.option = option
        self.flag = flag
        self.ini = ini


#: The plugin's own options, in the rows' shape; then the guard's per-test rows.
_ENABLED = _Spelling(
    _config.Option(
        "enabled",
        env="EXECUTOR_GUARD",
        flag="--executor-guard",
        parse=_config.parse_bool,
        env_parse=_enabled_variable,
        unset=("", "0"),
        default=False,
        help="guard every test: fail a test in which one call site creates pools repeatedly",
    ),
    "--executor-guard",
    "executor_guard",
)
_MODE = _Spelling(
    _config.Option(
        "mode",
        env="EXECUTOR_GUARD",
        flag="--executor-guard-mode",
        metavar="MODE",
        parse=_plugin_mode,
        env_parse=_plugin_mode_variable,
        unset=("", "0"),
        default="fail",
        help="fail (default: fail the test phase), raise (at the constructor), warn or log",
    ),
    "--executor-guard-mode",
    "executor_guard_mode",
)
_FAIL_SESSION = _Spelling(
    _config.Option(
        "fail_session",
        env=None,
        flag="--executor-guard-fail-session",
        parse=_config.parse_bool,
        default=False,
        help="fail the run when a call site churns across tests (see the summary)",
    ),
    "--executor-guard-fail-session",
    "executor_guard_fail_session",
)
_PER_TEST = tuple(
    _Spelling(option, "--executor-guard-" + option.flag[2:], "executor_guard_" + option.name)
    for option in _config.OPTIONS
    if option.per_test and option.flag is not None
)
_SPELLINGS = (_ENABLED, _MODE, *_PER_TEST, _FAIL_SESSION)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("executor_guard", "find code that creates pools over and over")
    for spelling in _SPELLINGS:
        option = spelling.option
        group.addoption(spelling.flag, dest=spelling.ini, **option.flag_arguments())
        if option.parse is _config.parse_bool:
            parser.addini(spelling.ini, option.help, type="bool", default=None)
        elif option.repeatable:
            parser.addini(spelling.ini, option.help, type="linelist", default=None)
        else:
            parser.addini(spelling.ini, option.help, default=None)


def _resolve(config: pytest.Config, spelling: _Spelling) -> Any:
    """An option's value: command line, then ini, then environment, then its default."""
    option = spelling.option
    given = config.getoption(spelling.ini)
    if given not in (None, "", []):
        return option.parse(given, spelling.flag)
    ini = config.getini(spelling.ini)
    if ini not in (None, "", []):
        return option.parse(ini, f"ini option {spelling.ini}")
    raw = _config.variable(option, os.environ)
    if raw is not None and option.env is not None:
        return option.env_parse(raw, option.env)
    return option.default


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "executor_guard(threshold=None, allow=None): guard this test; override the threshold, "
        "or allow churn at call sites matching glob patterns (allow=True: anywhere).",
    )
    plugin = _Plugin(config)
    config.stash[_STASH] = plugin
    config.pluginmanager.register(plugin, "executor_guard_plugin")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(plugin), "executor_guard_xdist")


class _Settings:
    """The plugin's options, resolved from command line, ini and environment."""

    def __init__(self, config: pytest.Config) -> None:
        self.enabled: bool = _resolve(config, _ENABLED)
        self.mode: str = _resolve(config, _MODE)
        self.fail_session: bool = _resolve(config, _FAIL_SESSION)
        #: Each test's configuration before its marker and mode apply.
        self.base = _config.Config(
            **{spelling.option.name: _resolve(config, spelling) for spelling in _PER_TEST}
        )
        self.threshold = self.base.threshold


def _sites(count: int) -> str:
    return f"{count} call site" + ("" if count == 1 else "s")


class _Plugin:
    """Per-test guards and the session's cross-test tally."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        try:
            self.settings = _Settings(config)
        except ConfigError as error:
            raise pytest.UsageError(f"executor_guard: {error}") from None
        #: (file, line, function) -> {"created", "tests": {nodeid: n}, "site": first site dict}
        self.tally: dict[tuple[str, int, str], dict[str, Any]] = {}

    # -- per test -------------------------------------------------------------

    def _wants(self, item: pytest.Item) -> bool:
        return (
            self.settings.enabled
            or item.get_closest_marker("executor_guard") is not None
            or "executor_guard" in getattr(item, "fixturenames", ())
        )

    def _test_config(self, item: pytest.Item) -> tuple[_config.Config, str]:
        config = self.settings.base
        marker = item.get_closest_marker("executor_guard")
        if marker is not None:
            source = f"@pytest.mark.executor_guard on {item.nodeid}"
            if marker.kwargs.get("threshold") is not None:
                threshold = _config.parse_threshold(
                    marker.kwargs["threshold"], f"{source}: threshold"
                )
                config = config.replace(threshold=threshold)
            allow = marker.kwargs.get("allow")
            if allow is True:
                config = config.replace(ignore=(*config.ignore, "*"))
            elif allow:
                allowed = _config.parse_ignore(
                    [allow] if isinstance(allow, str) else list(allow), f"{source}: allow"
                )
                config = config.replace(ignore=(*config.ignore, *allowed))
        mode = self.settings.mode
        return config.replace(mode="log" if mode == "fail" else mode), mode

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: Optional[pytest.Item]
    ) -> Generator[None, object, object]:
        if not self._wants(item):
            return (yield)
        from ._guard import block as guard_block

        try:
            config, mode = self._test_config(item)
        except ConfigError as error:
            raise pytest.UsageError(f"executor_guard: {error}") from None
        block = guard_block(config, record_only=mode == "fail")
        guard = block.__enter__()
        item.stash[_TEST_GUARD] = _TestGuard(guard, mode)
        try:
            return (yield)
        finally:
            block.__exit__(None, None, None)
            self._add_to_tally(item, guard)

    def _crossed(self, item: pytest.Item) -> list[dict[str, Any]]:
        state = item.stash.get(_TEST_GUARD, None)
        if state is None or state.mode != "fail":
            return []
        # The registry's counts only (no report, no psutil) after every phase;
        # a report's text only for a phase that fails.
        if not any(view["churn"] and not view["ignored"] for view in state.guard.snapshot().sites):
            return []
        return [
            site
            for site in state.guard.report(process_figures=False).sites
            if "churn" in site["findings"] and (site["file"], site["line"]) not in state.failed
        ]

    def _phase(self, item: pytest.Item) -> Generator[None, object, object]:
        """Run a phase; if it fails on its own, its churn is not reported again later."""
        try:
            return (yield)
        except BaseException:
            state = item.stash.get(_TEST_GUARD, None)
            if state is not None:
                state.failed.update((s["file"], s["line"]) for s in self._crossed(item))
            raise

    def _check(self, item: pytest.Item, phase: str) -> None:
        state = item.stash.get(_TEST_GUARD, None)
        crossed = self._crossed(item)
        if state is None or not crossed:
            return
        from ._report import site_text

        lines = [
            f"executor_guard: {_sites(len(crossed))} created pools repeatedly during the "
            f"{phase} of {item.nodeid} (threshold {state.guard.config.threshold} per test)",
        ]
        for site in crossed:
            state.failed.add((site["file"], site["line"]))
            lines.append("")
            lines.extend(site_text(site))
        lines.append("")
        lines.append(
            "Create the pool once (a module-level or fixture-scoped pool) and reuse it, or allow "
            "this site with @pytest.mark.executor_guard(allow=...)."
        )
        pytest.fail("\n".join(lines), pytrace=False)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield from self._phase(item)
        self._check(item, "setup")
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        result = yield from self._phase(item)
        self._check(item, "call")
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: Optional[pytest.Item]
    ) -> Generator[None, object, object]:
        result = yield from self._phase(item)
        self._check(item, "teardown")
        return result

    # -- the session --------------------------------------------------------------

    def _add_to_tally(self, item: pytest.Item, guard: Any) -> None:
        try:
            sites = guard.snapshot().sites
        except Exception:  # never break the run over the summary
            return
        for view in sites:
            if view["ignored"]:
                continue
            site = {"file": view["file"], "line": view["line"], "function": view["function"]}
            self.add_site(site, item.nodeid, view["created"])

    def add_site(self, site: dict[str, Any], nodeid: str, created: int) -> None:
        key = (site["file"], site["line"], site["function"])
        entry = self.tally.setdefault(key, {"created": 0, "tests": {}, "site": site})
        entry["created"] += created
        entry["tests"][nodeid] = entry["tests"].get(nodeid, 0) + created

    def churning(self) -> list[tuple[tuple[str, int, str], dict[str, Any]]]:
        """Sites whose pools, counted over the whole session, reach the threshold."""
        found = [
            (key, entry)
            for key, entry in self.tally.items()
            if entry["created"] >= self.settings.threshold and len(entry["tests"]) > 1
        ]
        return sorted(found, key=lambda kv: -kv[1]["created"])

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: send the tally home
            import json

            workeroutput[_DATA] = json.dumps([{"key": list(k), **v} for k, v in self.tally.items()])
            return
        if self.settings.fail_session and self.churning() and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if getattr(self.config, "workeroutput", None) is not None:
            return
        churning = self.churning()
        if not churning:
            return
        from ._report import short_path

        write = terminalreporter.write_line
        terminalreporter.section("executor_guard: call sites that churn across tests", sep="=")
        for (file, line, function), entry in churning:
            tests = entry["tests"]
            write(
                f"{short_path(file)}:{line} in {function}: {entry['created']} pools over "
                f"{len(tests)} tests (threshold {self.settings.threshold})"
            )
            # Most pools first, then in the order the tests ran.
            ranked = sorted(tests.items(), key=lambda kv: -kv[1])
            for nodeid, count in ranked[:10]:
                write(f"    {count:>5}  {nodeid}")
            if len(tests) > 10:
                write(f"    ... and {len(tests) - 10} more tests")
        if self.settings.fail_session:
            write("executor_guard: failing the run (--executor-guard-fail-session)")


class _XdistController:
    """Merges the tallies that xdist workers send at the end of their session."""

    def __init__(self, plugin: _Plugin) -> None:
        self.plugin = plugin

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        import json

        raw = getattr(node, "workeroutput", {}).get(_DATA)
        if not raw:
            return
        for entry in json.loads(raw):
            key = tuple(entry["key"])
            for nodeid, count in entry["tests"].items():
                self.plugin.add_site(
                    {"file": key[0], "line": key[1], "function": key[2], **entry["site"]},
                    nodeid,
                    count,
                )


class _TestGuard:
    """The per-test guard and what was already reported for it."""

    def __init__(self, guard: Any, mode: str) -> None:
        self.guard = guard
        self.mode = mode
        self.failed: set[tuple[str, int]] = set()


class ExecutorGuardFixture:
    """What the ``executor_guard`` fixture gives a test, in the style of ``caplog``."""

    def __init__(self, guard: Any) -> None:
        self._guard = guard

    def report(self) -> Any:
        """The report of this test so far (``to_dict()``, ``to_text()``)."""
        return self._guard.report(process_figures=False)

    @property
    def sites(self) -> list[dict[str, Any]]:
        """This test's call sites so far, largest first (JSON report site dicts)."""
        sites: list[dict[str, Any]] = self.report().sites
        return sites

    @property
    def pools(self) -> int:
        """How many pools this test has created so far."""
        return sum(site["created"] for site in self.sites)

    def churning(self) -> list[dict[str, Any]]:
        """Sites that crossed the threshold in this test."""
        return [site for site in self.sites if "churn" in site["findings"]]

    def assert_no_churn(self) -> None:
        """Fail with the sites' details if any call site churned in this test so far."""
        __tracebackhide__ = True
        churning = self.churning()
        if churning:
            from ._report import site_text

            lines = [f"{_sites(len(churning))} created pools repeatedly:"]
            for site in churning:
                lines.extend(site_text(site))
            raise AssertionError("\n".join(lines))

    def clear(self) -> None:
        """Forget what this test recorded so far."""
        self._guard.reset()


@pytest.fixture
def executor_guard(request: pytest.FixtureRequest) -> ExecutorGuardFixture:
    """Inspect the pools this test creates (guarded even without ``--executor-guard``)."""
    state = request.node.stash.get(_TEST_GUARD, None)
    if state is None:  # pragma: no cover - the protocol wrapper always runs first
        pytest.skip("executor_guard plugin is not active for this item")
    return ExecutorGuardFixture(state.guard)
