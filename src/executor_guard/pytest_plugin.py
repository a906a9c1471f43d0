"""The pytest plugin: fail the test that churns pools, summarise the session.

Registered through the ``pytest11`` entry point and inactive (nothing patched)
unless enabled by ``--executor-guard`` or the ini option ``executor_guard =
true``; a test that uses the ``executor_guard`` fixture or marker is guarded
on its own. ``EXECUTOR_GUARD`` does not enable it: that variable activates the
process-wide guard at interpreter start (``_startup``), in its own mode.

Each guarded test has counts of its own for its setup, call and teardown
phases. After each phase, a call site that crossed the threshold *in this test*
fails the test in that phase, with the site, count, shutdown modes and creation
stack in the failure text: churn inside a fixture fails the fixture's setup or
teardown, not the test body. Across the session, sites are also counted over
all tests, so a helper that builds one pool per call, called once per test,
shows up in the terminal summary with the tests that hit it
(``--executor-guard-fail-session`` makes that fail the run).

Where the per-test counts come from depends on who else guards the process:

* nobody: each test runs in a ``guarded()`` block of its own (``_guard.block``),
  patched for the test only, with the plugin's mode acting at the constructor;
* a process guard installed before the test (the launcher, environment
  activation, ``install()``): that guard stays active and records every pool,
  so its report, summary and ``--fail-on`` verdict are complete, and the
  test's counts are the difference between two snapshots of it
  (:class:`_ProcessShare`). No second patch layer, each pool counted once.
  The process guard's mode acts at the constructor; the plugin judges each
  phase afterwards (``raise`` then fails the phase like ``fail``; ``warn``
  issues the warning through pytest's capture; ``log`` leaves it to the
  process guard's own log).

Options are read off the same table as the launcher's (``_config.OPTIONS``):
each per-test option of the guard (threshold, window, stack depth, ignore,
log format and target) is ``--executor-guard-FLAG``, the ini key
``executor_guard_NAME`` and its environment variable. Precedence: command
line, then ini, then environment; a bad value names its source. A bad
environment value stops pytest only when the plugin was enabled for the run;
otherwise the plugin ignores it (the start-up hook has its own say about the
variables it reads) and says so in the report header. Works with
pytest-xdist: every worker is guarded and sends its counts to the
controller, which prints the summary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Optional, Protocol

import pytest

from . import _config, _pyproject
from .exceptions import ConfigError

if TYPE_CHECKING:
    from ._baseline import Baseline
    from ._guard import Guard
    from ._registry import Snapshot
    from ._report import Report

PLUGIN_MODES = ("fail", "warn", "raise", "log")
_DATA = "executor_guard"
_STASH: pytest.StashKey[_Plugin] = pytest.StashKey()
_TEST_GUARD: pytest.StashKey[Any] = pytest.StashKey()


def _plugin_mode(value: object, source: str) -> str:
    return _config.parse_choice(value, source, PLUGIN_MODES)


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
        # Not EXECUTOR_GUARD: that variable asks for the process guard, whose
        # report must see the tests' pools (PYTEST_ADDOPTS=--executor-guard
        # is the environment's way to enable the plugin).
        env=None,
        flag="--executor-guard",
        parse=_config.parse_bool,
        default=False,
        help="guard every test: fail a test in which one call site creates pools repeatedly",
    ),
    "--executor-guard",
    "executor_guard",
)
_MODE = _Spelling(
    _config.Option(
        "mode",
        env=None,  # EXECUTOR_GUARD is the process guard's mode, not the plugin's
        flag="--executor-guard-mode",
        metavar="MODE",
        parse=_plugin_mode,
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
        # Switches too are read as text and parsed by the option table, so that
        # a bad value is one line naming the ini option (pytest's own "bool"
        # type would refuse it without saying which).
        if option.repeatable:
            parser.addini(spelling.ini, option.help, type="linelist", default=None)
        else:
            parser.addini(spelling.ini, option.help, default=None)


def _resolve(
    config: pytest.Config,
    spelling: _Spelling,
    notes: Optional[list[str]] = None,
    file: Optional[_pyproject.Settings] = None,
) -> Any:
    """An option's value: command line, ini, environment, ``[tool.executor_guard]``, default.

    With ``notes`` given (the plugin was not enabled for the run), a bad
    environment value is not pytest's problem: it is noted and the default
    used, rather than stopping every run in an environment that has it.
    A path (the baseline) is relative to where it was written: the
    invocation directory for the command line and the environment, the ini
    file's directory for ini, the ``pyproject.toml``'s for its table.
    """
    option = spelling.option
    here = str(config.invocation_params.dir)
    given = config.getoption(spelling.ini)
    if given not in (None, "", []):
        return _located(option, option.parse(given, spelling.flag), here)
    ini = config.getini(spelling.ini)
    if ini not in (None, "", []):
        inifile = config.inipath
        ini_dir = str(inifile.parent) if inifile is not None else str(config.rootpath)
        return _located(option, option.parse(ini, f"ini option {spelling.ini}"), ini_dir)
    raw = _config.variable(option, os.environ)
    if raw is not None and option.env is not None:
        if notes is None:
            return _located(option, option.env_parse(raw, option.env), here)
        try:
            return _located(option, option.env_parse(raw, option.env), here)
        except ConfigError as error:
            notes.append(f"executor_guard: {error}; the pytest plugin uses the default")
    if file is not None and option.name in file.values:
        return file.values[option.name]
    return option.default


def _located(option: _config.Option, value: Any, directory: str) -> Any:
    """A file option's relative path made absolute against ``directory``."""
    if option.name in _pyproject.PATHS and isinstance(value, str):
        return os.path.join(directory, os.path.expanduser(value))
    return value


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
        #: Bad environment values ignored because the plugin is not enabled.
        self.notes: list[str] = []
        notes = None if self.enabled else self.notes
        #: ``[tool.executor_guard]`` of the nearest pyproject.toml (a bad
        #: key or value there is the project's mistake: a usage error).
        self.file = _pyproject.discover(os.environ, str(config.invocation_params.dir))
        self.mode: str = _resolve(config, _MODE, notes)
        self.fail_session: bool = _resolve(config, _FAIL_SESSION, notes)
        #: Each test's configuration before its marker and mode apply.
        self.base = _config.Config(
            **{
                spelling.option.name: _resolve(config, spelling, notes, self.file)
                for spelling in _PER_TEST
            }
        )
        self.threshold = self.base.threshold
        #: The baseline's known sites pass: they fail no test and no session.
        self.baseline: Optional[Baseline] = None
        if self.base.baseline is not None:
            from ._baseline import cached
            from ._report import ReportFileError

            try:
                self.baseline = cached(self.base.baseline)
            except ReportFileError as error:
                if self.enabled:
                    raise ConfigError("baseline", self.base.baseline, str(error)) from None
                self.notes.append(
                    f"executor_guard: cannot read the baseline {error}; the plugin uses none"
                )
                self.base = self.base.replace(baseline=None)

    def header(self, start: str) -> str:
        """The session header's line: what the run is guarded with, and from where."""
        base = self.base
        window = f", window {base.window:g}s" if base.window is not None else ""
        if self.baseline is not None:
            baseline = f"{_pyproject.display(self.baseline.path, start)} "
            baseline += f"({_sites(len(self.baseline))})"
        else:
            baseline = "none"
        return (
            f"executor_guard: mode {self.mode}, threshold {base.threshold}{window}, "
            f"baseline {baseline}, config {self.file.describe(start)}"
        )


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
        #: site key (see _key) -> {"created", "tests": {nodeid: n}, "site": first site dict}
        self.tally: dict[tuple[Any, ...], dict[str, Any]] = {}
        #: The process guard and its last snapshot, taken at the end of the previous test.
        self._last_look: Optional[tuple[Any, Snapshot]] = None

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
            self._last_look = None  # this test's pools are nobody's: look afresh
            return (yield)
        from ._guard import active_guard

        try:
            config, mode = self._test_config(item)
        except ConfigError as error:
            raise pytest.UsageError(f"executor_guard: {error}") from None
        process_guard = active_guard()
        counts: _Counts
        if process_guard is None:
            counts = _OwnBlock(config, mode)
        else:
            # The previous test's last look at the same guard is this one's
            # start: one snapshot fewer per test (each costs one view per site).
            previous = self._last_look
            start = previous[1] if previous is not None and previous[0] is process_guard else None
            counts = _ProcessShare(process_guard, config, start)
        state = item.stash[_TEST_GUARD] = _TestGuard(counts, mode)
        try:
            return (yield)
        finally:
            counts.close()
            self._add_to_tally(item, state)
            look = counts.last_look() if isinstance(counts, _ProcessShare) else None
            self._last_look = (process_guard, look) if look is not None else None

    def _crossed(self, item: pytest.Item) -> list[dict[str, Any]]:
        """The sites that crossed this test's threshold and were not reported yet."""
        state = item.stash.get(_TEST_GUARD, None)
        if state is None or not state.checks:
            return []
        # The counts only (no report, no psutil) after every phase; a
        # report's text only for a phase that fails.
        if not any(view["churn"] and not view["ignored"] for view in state.counts.views()):
            return []
        baseline = self.settings.baseline
        return [
            site
            for site in state.counts.report().sites
            if "churn" in site["findings"]
            and (site["file"], site["line"]) not in state.failed
            and not (baseline is not None and baseline.knows(site))
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
        threshold = state.counts.config.threshold
        for site in crossed:
            state.failed.add((site["file"], site["line"]))
        if state.mode == "warn":  # under a process guard: the warning, after the phase
            _warn(crossed, f"the {phase} of {item.nodeid}", threshold)
            return
        from ._report import site_text

        lines = [
            f"executor_guard: {_sites(len(crossed))} created pools repeatedly during the "
            f"{phase} of {item.nodeid} (threshold {threshold} per test)",
        ]
        for site in crossed:
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

    def _add_to_tally(self, item: pytest.Item, state: _TestGuard) -> None:
        try:
            sites = state.counts.final_views()
        except Exception:  # never break the run over the summary
            return
        baseline = self.settings.baseline
        for view in sites:
            if view["ignored"]:
                continue
            if baseline is not None and baseline.knows_churn_at(_frame(view), view["creator"]):
                continue
            site = {"file": view["file"], "line": view["line"], "function": view["function"]}
            self.add_site(site, item.nodeid, view["created"], _key(view))

    def add_site(
        self, site: dict[str, Any], nodeid: str, created: int, key: tuple[Any, ...]
    ) -> None:
        key = tuple(key)
        entry = self.tally.setdefault(key, {"created": 0, "tests": {}, "site": site})
        entry["created"] += created
        entry["tests"][nodeid] = entry["tests"].get(nodeid, 0) + created

    def churning(self) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
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

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """One line of settings when the plugin is enabled; the values it ignored, one each."""
        lines = list(self.settings.notes)
        if self.settings.enabled:
            lines.insert(0, self.settings.header(str(config.invocation_params.dir)))
        return lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if getattr(self.config, "workeroutput", None) is not None:
            return
        churning = self.churning()
        if not churning:
            return
        from ._report import short_path

        write = terminalreporter.write_line
        terminalreporter.section("executor_guard: call sites that churn across tests", sep="=")
        for key, entry in churning:
            file, line, function = key[:3]
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
                    key,
                )


class _Counts(Protocol):
    """One test's pool counts, wherever they are kept (see the module's docstring)."""

    config: _config.Config

    def views(self) -> list[dict[str, Any]]:
        """This test's sites as registry views (raw counts, ``churn``, ``ignored``)."""
        ...

    def final_views(self) -> list[dict[str, Any]]:
        """:meth:`views` once the test is over (the last phase's, where they are kept)."""
        ...

    def report(self) -> Report:
        """This test's sites as a report (no process figures)."""
        ...

    def reset(self) -> None:
        """Forget what this test created so far."""
        ...

    def close(self) -> None:
        """The test is over."""
        ...


class _OwnBlock:
    """Counts in a ``guarded()`` block of the test's own: no other guard is active."""

    def __init__(self, config: _config.Config, mode: str) -> None:
        from ._guard import block

        # In fail mode the policy only records; the plugin fails the phase.
        self._block = block(config, record_only=mode == "fail")
        self._guard = self._block.__enter__()
        self.config = self._guard.config

    def views(self) -> list[dict[str, Any]]:
        return self._guard.snapshot().sites

    def final_views(self) -> list[dict[str, Any]]:
        return self.views()

    def report(self) -> Report:
        return self._guard.report(process_figures=False)

    def reset(self) -> None:
        self._guard.reset()

    def close(self) -> None:
        self._block.__exit__(None, None, None)


class _ProcessShare:
    """Counts read off the process guard: what it recorded since the test began.

    The process guard (launcher, environment, ``install()``) stays active, so
    its report sees every pool of the test exactly once. This test's numbers
    are the difference between a snapshot now and one at the test's start;
    ``churn`` and ``ignored`` are judged by the test's own configuration.
    Some figures can only be bounded: ``first_at`` is the test's start for a
    site that existed before it; ``peak_live`` is the process peak if the test
    raised it, else at most the earlier peak; the stacks are those captured
    during the test (a site past its first 16 creations is sampled, so a
    test may have none); and with a ``window`` the test
    churns if it reached the threshold within the window or at that average
    rate over the test.
    """

    def __init__(
        self, guard: Guard, config: _config.Config, start: Optional[Snapshot] = None
    ) -> None:
        from ._callsite import ignore_matcher

        self.config = config
        self._guard = guard
        self._ignore = ignore_matcher(config.ignore)
        self._before: dict[tuple[str, int, str], dict[str, Any]] = {}
        self._since = 0.0
        #: The last snapshot of the process guard and this test's views of it.
        self._last: Optional[tuple[Snapshot, list[dict[str, Any]]]] = None
        self._start(start if start is not None else guard.snapshot())

    def _start(self, snapshot: Snapshot) -> None:
        self._before = {_key(view): view for view in snapshot.sites}
        self._since = snapshot.elapsed
        self._last = None

    def reset(self) -> None:
        self._start(self._guard.snapshot())

    def last_look(self) -> Optional[Snapshot]:
        """The process guard's last snapshot taken for this test, if any."""
        return self._last[0] if self._last is not None else None

    def _snapshot(self) -> Snapshot:
        from ._registry import Snapshot

        now = self._guard.snapshot()
        views = []
        for view in now.sites:
            mine = self._delta(view, self._before.get(_key(view)), now.elapsed)
            if mine is not None:
                views.append(mine)
        views.sort(key=lambda v: (-(v["created"] + v["refused"]), v["file"], v["line"]))
        # Every slot copied, so fields added to snapshots later carry over.
        copy = Snapshot.__new__(Snapshot)
        for name in Snapshot.__slots__:
            setattr(copy, name, getattr(now, name, None))
        copy.sites = views
        self._last = (now, views)
        return copy

    def _delta(
        self, now: dict[str, Any], before: Optional[dict[str, Any]], elapsed: float
    ) -> Optional[dict[str, Any]]:
        """``now`` minus ``before`` (None: the site is new), or None if the test made none."""
        view = dict(now)  # fields not subtracted below are the process's, as they are now
        if before is not None:
            for name in ("created", "refused", "nowait_pending", "cancel_futures"):
                view[name] = now[name] - before[name]
            for name in ("classes", "threads", "max_workers"):
                view[name] = _minus(now[name], before[name])
            ended = ("context", "wait", "nowait", "never")
            shutdown = {mode: now["shutdown"][mode] - before["shutdown"][mode] for mode in ended}
            shutdown["open"] = max(0, view["created"] - sum(shutdown.values()))
            view["shutdown"] = {**now["shutdown"], **shutdown}
            earlier = {frames: count for count, frames in before["stacks"]}
            stacks = [(count - earlier.get(frames, 0), frames) for count, frames in now["stacks"]]
            view["stacks"] = sorted(
                (entry for entry in stacks if entry[0] > 0), key=lambda e: -e[0]
            )
            sampling = dict(now["stack_sampling"])
            for name in ("captured", "dropped"):
                sampling[name] = now["stack_sampling"][name] - before["stack_sampling"][name]
            view["stack_sampling"] = sampling
            view["first_at"] = max(before["last_at"], self._since)
            if now["peak_live"] <= before["peak_live"]:
                view["peak_live"] = max(
                    now["live"], min(before["peak_live"], before["live"] + view["created"])
                )
        attempts = view["created"] + view["refused"]
        if attempts <= 0:
            return None
        config = self.config
        churn = attempts >= config.threshold
        if churn and config.window is not None:
            span = elapsed - self._since
            churn = span <= config.window or attempts * config.window / span >= config.threshold
        view["churn"] = churn
        view["ignored"] = self._ignored(view)
        return view

    def _ignored(self, view: dict[str, Any]) -> bool:
        from ._callsite import matches_ignore

        module = view.get("module") or ""
        return self._ignore is not None and matches_ignore(self._ignore, _frame(view), module)

    def views(self) -> list[dict[str, Any]]:
        return self._snapshot().sites

    def final_views(self) -> list[dict[str, Any]]:
        # The teardown check has just looked: nothing of the test's ran since.
        return self._last[1] if self._last is not None else self.views()

    def report(self) -> Report:
        from ._report import Report, build

        figures: dict[str, Optional[int]] = {"threads": None, "rss_bytes": None, "fds": None}
        return Report(build(self._snapshot(), self.config, figures, time.time()))

    def close(self) -> None:
        """Nothing to undo: the process guard was never touched."""


def _frame(view: dict[str, Any]) -> tuple[str, int, str]:
    """The site's own frame: what ``ignore`` patterns match."""
    return (view["file"], view["line"], view["function"])


def _key(view: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a site: its frame and, when another line built the pools, that line."""
    creator = view.get("creator")
    where: tuple[Any, Any] = (None, None)
    if creator and (creator[0], creator[1]) != (view["file"], view["line"]):
        where = (creator[0], creator[1])
    return (view["file"], view["line"], view["function"], *where)


def _minus(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """A count table's growth: the entries that grew, by how much."""
    grown = {key: count - before.get(key, 0) for key, count in now.items()}
    return {key: count for key, count in grown.items() if count > 0}


def _warn(sites: list[dict[str, Any]], during: str, threshold: int) -> None:
    """``ExecutorChurnWarning`` for each site, at its line (pytest's capture sees them).

    Python ignores ``ResourceWarning`` by default and the process guard may be
    in another mode than ``warn``, so, as a guard in ``warn`` mode does, a
    ``default`` entry for our category goes just before the stock ignore
    entry, where the user's ``-W`` and ``filterwarnings`` entries still win;
    only while these warnings are issued.
    """
    import warnings

    from ._guard import STOCK_IGNORE, options_cover_our_warning
    from .exceptions import ExecutorChurnWarning

    with warnings.catch_warnings():
        filters: list[Any] = warnings.filters  # type: ignore[assignment]
        if not options_cover_our_warning():
            stock = [i for i, entry in enumerate(filters) if entry == STOCK_IGNORE]
            ours = ("default", None, ExecutorChurnWarning, None, 0)
            filters.insert(stock[-1] if stock else len(filters), ours)
            # Appending an entry already present changes nothing but makes
            # the warnings module drop its cached decisions (public API).
            warnings.filterwarnings("default", category=ExecutorChurnWarning, append=True)
        for site in sites:
            classes = ", ".join(sorted(site["classes"])) or "pool"
            text = (
                f"{classes} created {site['created']} times at {site['file']}:{site['line']} in "
                f"{site['function']} during {during} (threshold {threshold} per test); create "
                "one pool and reuse it instead of one per call"
            )
            # A registry of its own: each test's warning shows, not only the first.
            warnings.warn_explicit(
                ExecutorChurnWarning(text),
                ExecutorChurnWarning,
                site["file"],
                site["line"],
                module=site.get("module") or None,
                registry={},
            )


class _TestGuard:
    """A guarded test's counts, its plugin mode, and what was already reported for it."""

    def __init__(self, counts: _Counts, mode: str) -> None:
        self.counts = counts
        self.mode = mode
        #: Whether the plugin judges each phase: in fail mode; and under a
        #: process guard, whose policy is the one acting at the constructor,
        #: in raise (fails the phase) and warn (warns after it) modes too.
        self.checks = mode == "fail" or (
            isinstance(counts, _ProcessShare) and mode in ("raise", "warn")
        )
        self.failed: set[tuple[str, int]] = set()


class ExecutorGuardFixture:
    """What the ``executor_guard`` fixture gives a test, in the style of ``caplog``."""

    def __init__(self, counts: _Counts) -> None:
        self._counts = counts

    def report(self) -> Report:
        """The report of this test so far (``to_dict()``, ``to_text()``)."""
        return self._counts.report()

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
        self._counts.reset()


@pytest.fixture
def executor_guard(request: pytest.FixtureRequest) -> ExecutorGuardFixture:
    """Inspect the pools this test creates (guarded even without ``--executor-guard``)."""
    state = request.node.stash.get(_TEST_GUARD, None)
    if state is None:  # pragma: no cover - the protocol wrapper always runs first
        pytest.skip("executor_guard plugin is not active for this item")
    return ExecutorGuardFixture(state.counts)
