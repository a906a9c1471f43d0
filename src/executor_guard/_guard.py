"""The guard: one configuration, its registry and policy, and the public API.

Data flows one way: patched methods (``_patch``) -> hooks (``_hooks``: call
site, stack) -> registry (``_registry``: counts) -> policy (``_policy``: what
is churn, what to do) -> report (``_report``). A :class:`Guard` ties one
configuration to one registry and one policy; :data:`_GUARDS` holds the
active guard and the ones ``guarded()`` blocks suspended, and is one part of
the package's state (``_state``).
"""

from __future__ import annotations

import sys
import threading
import time

from . import _callsite, _config, _hooks, _patch, _registry, exceptions
from ._policy import Policy
from ._state import STATE
from .exceptions import ExecutorChurnWarning

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Any, Optional

    from ._callsite import Frame, SiteKey
    from ._registry import Site
    from ._report import Report


class _Guards:
    """The active guard, the suspended ones, and the warnings changes we made."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.guard: Optional[Guard] = None
        self.suspended: list[Optional[Guard]] = []
        self.installed: Optional[Guard] = None
        self.last: Optional[Guard] = None
        self.filter_added: Optional[tuple[Any, ...]] = None
        self.warnoptions_applied: set[str] = set()
        #: Signals (by name) whose handlers install() set up; uninstall() removes them.
        self.handlers: set[str] = set()

    def reset(self) -> None:
        with self.lock:
            _deactivate()
            self.suspended.clear()
            self.installed = None
            self.last = None
            self.handlers.clear()

    def after_fork(self) -> None:
        self.lock = threading.RLock()
        # Every guard the child may report from starts empty.
        guards = {id(g): g for g in (self.guard, self.installed, self.last, *self.suspended)}
        for guard in guards.values():
            if guard is not None:
                guard.reset()


_GUARDS = _Guards()
STATE.register("guards", _GUARDS)


class Guard:
    """An active configuration with its own registry.

    Obtained from :func:`install` or ``with guarded() as guard``; ``report()``
    describes what this guard recorded. The slots are what the hooks read on
    the hot path.
    """

    __slots__ = (
        "__weakref__",
        "config",
        "depth",
        "ignore",
        "kind_of",
        "kinds",
        "last",
        "own_policy",
        "policy",
        "registry",
        "sites",
    )

    def __init__(self, config: _config.Config, policy: Optional[Policy] = None) -> None:
        self.config = config
        self.policy = policy if policy is not None else Policy(config)
        self.own_policy = policy is None
        self.kind_of = _callsite.classifier(config.app)
        self.kinds = self.kind_of.cache
        self.depth = config.stack_depth
        self.ignore = _callsite.ignore_matcher(config.ignore)
        self.registry = _registry.Registry()
        self.sites = self.registry.sites
        #: The hooks' one-entry cache: (code, instruction, site) of the last
        #: direct creation. It holds one code object, never a pool or a class.
        self.last: tuple[Any, int, Any] = (None, -1, None)

    def new_site(
        self, key: SiteKey, site_frame: FrameType, creator_frame: FrameType, at: float
    ) -> Optional[Site]:
        """The hooks met ``key`` for the first time: make its site (None past the cap).

        ``key`` is the site frame's ``(file, line, function)``, followed by the
        creator's ``(file, line)`` when a library line built the pool.
        """
        module = site_frame.f_globals.get("__name__", "")
        if not isinstance(module, str):
            module = ""
        frame: Frame = (key[0], key[1], key[2])
        creator = frame if creator_frame is site_frame else _callsite.describe(creator_frame)
        # With no application frame on the stack the site is the creator.
        app_frame = frame if self.kind_of(frame[0]) == _callsite.APP else None
        ignored = self.ignore is not None and _callsite.matches_ignore(self.ignore, frame, module)
        return self.registry.site(
            key, creator, module, ignored, at, self.policy.configure_site, app_frame=app_frame
        )

    # -- reporting ----------------------------------------------------------

    def report(self, *, process_figures: bool = True) -> Report:
        """A report of everything this guard recorded so far.

        ``process_figures=False`` leaves out psutil's figures (and its import,
        some 20 ms), for callers that only need the sites' findings.
        """
        with STATE.importing():  # report-time imports: see _state
            from ._process import figures
            from ._report import Report, build

        # Figures first: importing psutil takes a while, and the snapshot should
        # be the later, fresher of the two.
        empty: dict[str, Optional[int]] = {"threads": None, "rss_bytes": None, "fds": None}
        process = figures() if process_figures else empty
        return Report(build(self.registry.snapshot(), self.config, process, time.time()))

    def snapshot(self) -> _registry.Snapshot:
        """The registry's counts now, without process figures or formatting."""
        return self.registry.snapshot()

    def reset(self) -> None:
        """Forget everything recorded (open pools included)."""
        self.registry.forget_records()
        self.last = (None, -1, None)
        self.registry = _registry.Registry()
        self.sites = self.registry.sites

    def _reconfigure(self, config: _config.Config) -> None:
        if config == self.config:
            # Installing again as before: the sites' policy state is still
            # right, and keeping it keeps the next creation on the fast path.
            return
        self.config = config
        if config.app != self.kind_of.app:
            # Sites already made keep their identity; new creations use the new patterns.
            self.kind_of = _callsite.classifier(config.app)
            self.kinds = self.kind_of.cache
            self.last = (None, -1, None)
        self.depth = config.stack_depth
        self.ignore = _callsite.ignore_matcher(config.ignore)
        if self.own_policy:
            self.policy = Policy(config)
        for site in list(self.sites.values()):
            site.ignored = self.ignore is not None and _callsite.matches_ignore(
                self.ignore, (site.file, site.line, site.function), site.module
            )
            self.policy.configure_site(site)
            _registry.refresh(site)

    def __repr__(self) -> str:
        active = "active" if _GUARDS.guard is self else "inactive"
        config = self.config
        return f"<executor_guard.Guard {active} mode={config.mode} threshold={config.threshold}>"


# -- warnings filter ---------------------------------------------------------

STOCK_IGNORE = ("ignore", None, ResourceWarning, None, 0)


def _add_warning_filter() -> None:
    """Show ExecutorChurnWarning by default, yet let the user's filters win.

    Python ignores ResourceWarning by default through a filter at the end of
    the list; ours goes just before that stock filter, so any -W,
    PYTHONWARNINGS or filterwarnings() entry the user added earlier still wins.
    """
    _apply_warnoptions()
    import warnings

    entry = ("default", None, ExecutorChurnWarning, None, 0)
    filters: list[Any] = warnings.filters  # type: ignore[assignment]
    if entry in filters or options_cover_our_warning():
        return
    # The stock entry is the last one equal to it: a user's own
    # "-W ignore::ResourceWarning" looks the same but comes first.
    index = len(filters)
    for position in range(len(filters) - 1, -1, -1):
        if filters[position] == STOCK_IGNORE:
            index = position
            break
    filters.insert(index, entry)
    # An append of an existing entry changes nothing but tells the warnings
    # machinery that the filters changed (public API, unlike _filters_mutated).
    warnings.filterwarnings("default", category=ExecutorChurnWarning, append=True)
    _GUARDS.filter_added = entry


def options_cover_our_warning() -> bool:
    """Whether a ``-W`` / ``PYTHONWARNINGS`` entry already decides our warning's fate.

    Python merges a user's ``ignore::ResourceWarning`` with its identical stock
    entry, so position alone cannot tell them apart: the options can.
    """

    covering = {"", "Warning", "ResourceWarning", "builtins.Warning", "builtins.ResourceWarning"}
    for option in sys.warnoptions:
        parts = option.split(":")
        category = parts[2].strip() if len(parts) > 2 else ""
        if category in covering or "executor_guard" in category:
            return True
    return False


def _apply_warnoptions() -> None:
    """Apply the ``-W`` / ``PYTHONWARNINGS`` entries that name our categories.

    Python reads those options before site-packages is on ``sys.path``, so it
    rejects ``error::executor_guard.ExecutorChurnWarning`` ("Invalid -W option
    ignored"). Once we run, the category is importable: apply such entries as
    Python would have, once each.
    """
    import warnings

    for option in sys.warnoptions:
        if "executor_guard" not in option or option in _GUARDS.warnoptions_applied:
            continue
        _GUARDS.warnoptions_applied.add(option)
        parts = [part.strip() for part in option.split(":")]
        parts += [""] * (5 - len(parts))
        action, message, category_name, module, lineno = parts[:5]
        category: type[Warning] = Warning
        if category_name:
            head, _, name = category_name.rpartition(".")
            if head not in ("executor_guard", "executor_guard.exceptions"):
                continue
            found = getattr(exceptions, name, None)
            if not (isinstance(found, type) and issubclass(found, Warning)):
                continue
            category = found
        actions = ("default", "always", "ignore", "module", "once", "error")
        matched = [a for a in actions if a.startswith(action)] if action else ["default"]
        if len(matched) != 1 or (lineno and not lineno.isdigit()):
            continue
        warnings.filterwarnings(
            matched[0],  # type: ignore[arg-type]
            message=message,
            category=category,
            module=(module + r"\Z") if module else "",
            lineno=int(lineno or 0),
        )


def _remove_warning_filter() -> None:
    entry = _GUARDS.filter_added
    if entry is None:
        return
    _GUARDS.filter_added = None
    import warnings

    filters: list[Any] = warnings.filters  # type: ignore[assignment]
    if entry in filters:
        filters.remove(entry)
        # Appending then removing an entry that matches nothing real is the
        # public way to make the warnings module drop its cached decisions.
        warnings.filterwarnings("ignore", category=_NeverWarning, append=True)
        if ("ignore", None, _NeverWarning, None, 0) in filters:
            filters.remove(("ignore", None, _NeverWarning, None, 0))


class _NeverWarning(Warning):
    """Only used to make the warnings module notice that its filters changed."""


# -- public API ----------------------------------------------------------------


def _activate(guard: Guard) -> None:
    _GUARDS.guard = guard
    _GUARDS.last = guard
    STATE.watch_forks()
    _hooks.bind(guard)
    _patch.install()
    if guard.config.mode == "warn":
        _add_warning_filter()
    else:
        _remove_warning_filter()


def _deactivate() -> list[str]:
    _GUARDS.guard = None
    _hooks.bind(None)
    left = _patch.uninstall()
    _remove_warning_filter()
    return left


def install(**options: Any) -> Guard:
    """Start guarding every pool created from now on; return the active guard.

    Idempotent: called again, it applies the new options to the active guard
    and keeps what was recorded. After :func:`uninstall`, it resumes recording
    into the same registry (:func:`reset` empties it). Raises
    :class:`~executor_guard.ConfigError` for a bad option, and for an option
    it cannot carry out: a report path that cannot be written, a signal
    handler asked for outside the main thread, or ``fail_on`` (an exit
    status is the launcher's, ``report``'s and pytest's to set).

    ``report_path`` writes the report when the process ends, ``dump_signal``
    writes it on that signal, ``sigterm=True`` writes it before SIGTERM ends
    the process; :func:`uninstall` takes the handlers away again.
    """
    endings = _endings_asked(options)
    guard = install_config(None, **options)
    _start_endings(guard.config, endings)
    return guard


def install_config(config: Optional[_config.Config] = None, /, **options: Any) -> Guard:
    """:func:`install` for the entry points, which set up the process's ending themselves.

    ``config`` (already validated) replaces the active guard's configuration;
    else ``options`` are validated over it.
    """
    with _GUARDS.lock:
        guard = _GUARDS.guard
        if guard is None:
            guard = _GUARDS.installed
        base = guard.config if guard is not None else None
        if config is None:
            config = _config.from_options(base, **options)
        if guard is None:
            guard = Guard(config)
        else:
            guard._reconfigure(config)
        if not _GUARDS.suspended:
            _GUARDS.installed = guard
        _activate(guard)
    if guard.config.metrics is not None:
        from . import _metrics

        _metrics.enable(guard.config.metrics)
    return guard


def _endings_asked(options: dict[str, Any]) -> dict[str, Any]:
    """The ending options ``install()`` was given, validated and checked before anything starts."""
    asked: dict[str, Any] = {}
    fail_on = options.get("fail_on")
    if fail_on is not None and _config.parse_fail_on(fail_on, "fail_on=") != "never":
        raise exceptions.ConfigError(
            "fail_on=",
            fail_on,
            "install() cannot set the exit status: use the launcher's --fail-on, "
            "'executor-guard report --fail-on' or the pytest plugin",
        )
    path = options.get("report_path")
    if path is not None:
        from . import _exit

        path = _config.parse_report_path(path, "report_path=")
        reason = None if path is None else _exit.check_report_path(path)
        if reason is not None:
            raise exceptions.ConfigError(
                "report_path=", path, f"cannot write a report there: {reason}"
            )
        if path is not None:
            # Resolved now: a program that changes directory keeps its report where asked.
            options["report_path"] = asked["report_path"] = _exit.resolve_report_path(path)
    for name in ("dump_signal", "sigterm"):
        value = options.get(name)
        if value is None or value is False:
            continue
        value = _config.BY_NAME[name].parse(value, f"{name}=")
        if value and threading.current_thread() is not threading.main_thread():
            raise exceptions.ConfigError(
                f"{name}=",
                options[name],
                "signal handlers can only be installed from the main thread",
            )
        if value:
            asked[name] = value
    return asked


def _start_endings(config: _config.Config, asked: dict[str, Any]) -> None:
    if not asked:
        return
    from . import _exit

    if "report_path" in asked:
        _exit.claim_report_path()
        _exit.report_at_exit()
    import signal

    # A handler an entry point set up before stays theirs: uninstall() leaves it.
    if "dump_signal" in asked:
        name = asked["dump_signal"]
        if not _exit.handling(int(getattr(signal, name))):
            _exit.dump_on_signal(name)
            _GUARDS.handlers.add(name)
    if asked.get("sigterm") and not _exit.handling(int(signal.SIGTERM)):
        _exit.report_on_sigterm()
        _GUARDS.handlers.add("SIGTERM")


def uninstall() -> None:
    """Stop recording and restore the original classes; what was recorded stays.

    Pools still open keep the ``open`` shutdown mode: their later shutdown can
    no longer be seen. Signal handlers ``install()`` set up are removed; no
    report is written at exit while no guard is active.
    """
    with _GUARDS.lock:
        guard = _GUARDS.guard
        _GUARDS.suspended.clear()
        left = _deactivate()
        if guard is not None:
            guard.registry.forget_records()
        handlers, _GUARDS.handlers = _GUARDS.handlers, set()
    if handlers:
        import signal

        from . import _exit

        for name in handlers:
            _exit.remove_handler(int(getattr(signal, name)))
    if left:
        from ._diagnostics import say

        say("left patched because other code wrapped them since: " + ", ".join(left))


class _Block:
    """The context manager returned by :func:`guarded`."""

    def __init__(self, config: _config.Config, policy: Optional[Policy] = None) -> None:
        self._config = config
        self._policy = policy
        self._guard: Optional[Guard] = None

    def __enter__(self) -> Guard:
        with _GUARDS.lock:
            guard = self._guard = Guard(self._config, self._policy)
            _GUARDS.suspended.append(_GUARDS.guard)
            _activate(guard)
        return guard

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        with _GUARDS.lock:
            guard = self._guard
            if _GUARDS.guard is guard and _GUARDS.suspended:
                outer = _GUARDS.suspended.pop()
                if outer is not None:
                    _activate(outer)
                else:
                    _deactivate()
                    _GUARDS.last = guard


def block(config: _config.Config, *, record_only: bool = False) -> _Block:
    """A ``guarded()`` block for an already validated ``config`` (the pytest plugin's).

    ``record_only``: the policy never acts; findings stay in the registry for
    the caller to read (the plugin then fails the test phase itself).
    """
    from ._policy import RecordOnly

    return _Block(config, RecordOnly(config) if record_only else None)


def guarded(**options: Any) -> _Block:
    """Guard pools created inside a ``with`` block, with a registry of their own.

    ``with guarded(mode="raise") as guard: ...`` then ``guard.report()``. A guard
    active before the block (from ``install``, the environment or the pytest
    plugin) is suspended during the block and resumed after it; the block's
    guard reports only what happened inside the block. Options are validated
    here, before the block starts.
    """
    return _Block(_config.from_options(None, **options))


def active_guard() -> Optional[Guard]:
    """The guard recording now, if any."""
    return _GUARDS.guard


def installed_guard() -> Optional[Guard]:
    """The guard :func:`install` made (recording or suspended by a block), else the active one."""
    return _GUARDS.installed if _GUARDS.installed is not None else _GUARDS.guard


def report() -> Report:
    """A report of the active guard, or of the last one when none is active."""
    guard = _GUARDS.guard or _GUARDS.last
    if guard is None:
        guard = Guard(_config.Config())
    return guard.report()


def reset() -> None:
    """Empty the registry of the active (or last) guard."""
    with _GUARDS.lock:
        guard = _GUARDS.guard or _GUARDS.last
        if guard is not None:
            guard.reset()


def is_installed() -> bool:
    """Whether a guard is recording now."""
    return _GUARDS.guard is not None
