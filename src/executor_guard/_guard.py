"""The guard: one configuration, its registry and policy, and the public API.

Data flows one way: patched constructor -> :meth:`Guard.before_init` (call
site, stack) -> registry -> policy -> output. The global state is one small
object, :data:`_state`, holding the active guard and the stack of guards that
``guarded()`` blocks suspended.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import BuiltinFunctionType, MethodType

from . import _accel, _callsite, _config, _patch, _registry, exceptions
from ._callsite import code_name, locate, type_info
from ._diagnostics import internal_error
from ._policy import Policy
from .exceptions import ExecutorChurnWarning

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Any, Optional

    from ._report import Report


class _State:
    """The module's global state, in one place."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.guard: Optional[Guard] = None
        self.suspended: list[Optional[Guard]] = []
        self.installed: Optional[Guard] = None
        self.last: Optional[Guard] = None
        self.fork_hook = False
        self.filter_added: Optional[tuple[Any, ...]] = None
        self.warnoptions_applied: set[str] = set()


_state = _State()


class Guard:
    """An active configuration with its own registry.

    Obtained from :func:`install` or ``with guarded() as guard``; ``report()``
    describes what this guard recorded.
    """

    def __init__(self, config: _config.Config, policy: Optional[Policy] = None) -> None:
        self.config = config
        self._registry = _registry.Registry(config)
        self.policy = policy if policy is not None else Policy(config)
        self._own_policy = policy is None
        self._kind_of = _callsite.classifier()
        self._kinds = self._kind_of.cache
        self._types = _callsite.types
        self._depth = config.stack_depth
        self._speed_up()

    @property
    def registry(self) -> _registry.Registry:
        """Where this guard records; replaced by :meth:`reset` and in a forked child."""
        return self._registry

    @registry.setter
    def registry(self, registry: _registry.Registry) -> None:
        self._registry = registry
        self._speed_up()

    def _speed_up(self) -> None:
        """Let the C hooks take the common cases, when they are available.

        They shadow :meth:`before_init` and :meth:`before_shutdown` on this
        instance and fall back to them for everything else.
        """
        speedups = _accel.speedups()
        if speedups is None or not _native_threads():
            return
        try:
            slow = MethodType(Guard.before_init, self)
            vars(self)["before_init"] = speedups.InitHook(slow, self._registry)
            vars(self)["before_shutdown"] = _accel.SHUTDOWN_HOOK
        except Exception as exc:
            internal_error("setting up the C hooks (the Python ones are used)", exc)
            vars(self).pop("before_init", None)
            vars(self).pop("before_shutdown", None)

    # -- hooks called by the patched methods -------------------------------

    def before_init(self, pool: Any, frame: Optional[FrameType]) -> Optional[_registry.Record]:
        """Record a pool being built; may raise on purpose (``raise`` mode, warning filters).

        ``frame`` is the patched ``__init__``'s caller, where the walk for the
        call site starts. This is the hot path. When that caller is
        application code (the common case) the call site is that frame, with
        no walk; the stack is captured only when the site samples it; the
        registry is touched once.
        """
        __tracebackhide__ = True
        try:
            info = self._types.get(type(pool)) or type_info(type(pool))
            skip = info.init
            creator: Optional[FrameType]
            site: Optional[FrameType]
            if (
                skip is None
                and frame is not None
                and self._kinds.get(frame.f_code.co_filename) == _callsite.APP
            ):
                creator = site = frame
            else:
                creator, site = locate(frame, self._kind_of, skip, self._kinds)
            if creator is None or site is None:
                return None
            code = site.f_code
            key = (code.co_filename, site.f_lineno, code_name(code))
            registry = self._registry
            known = registry.sites.get(key)
            sample = self._depth > 0 if known is None else known.attempts >= known.next_sample
            stack = _callsite.stack(creator, self._depth, self._kind_of) if sample else None
            record, crossing = registry.enter(pool, key, known, site, creator, stack)
        except Exception as exc:
            internal_error("recording a pool creation", exc)
            return None
        if crossing is not None:
            try:
                self.policy.act(crossing, site)
            except BaseException:
                if record is not None:
                    self.registry.abandon(record, refused=True)
                raise
        return record

    def init_failed(self, record: _registry.Record) -> None:
        """The original constructor raised: the pool was never built."""
        try:
            self.registry.abandon(record, refused=False)
        except Exception as exc:
            internal_error("undoing a failed pool creation", exc)

    #: Record how a pool is being shut down (its first shutdown only). A plain
    #: function, not a method: the patched ``shutdown`` calls it directly.
    before_shutdown = staticmethod(_registry.on_shutdown)

    # -- reporting ----------------------------------------------------------

    def report(self, *, process_figures: bool = True) -> Report:
        """A report of everything this guard recorded so far.

        ``process_figures=False`` leaves out psutil's figures (and its import,
        some 20 ms), for callers that only need the sites' findings.
        """
        from ._process import figures
        from ._report import Report, build

        # Figures first: importing psutil takes a while, and the snapshot should
        # be the later, fresher of the two.
        empty: dict[str, Optional[int]] = {"threads": None, "rss_bytes": None, "fds": None}
        process = figures() if process_figures else empty
        return Report(build(self.registry.snapshot(), process, time.time()))

    def reset(self) -> None:
        """Forget everything recorded (open pools included)."""
        self.registry.forget_records()
        self.registry = _registry.Registry(self.config)

    def _reconfigure(self, config: _config.Config) -> None:
        self.config = config
        self._depth = config.stack_depth
        self.registry.reconfigure(config)
        if self._own_policy:
            self.policy = Policy(config)

    def __repr__(self) -> str:
        active = "active" if _state.guard is self else "inactive"
        config = self.config
        return f"<executor_guard.Guard {active} mode={config.mode} threshold={config.threshold}>"


# -- warnings filter ---------------------------------------------------------

_STOCK_IGNORE = ("ignore", None, ResourceWarning, None, 0)


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
    if entry in filters or _options_cover_our_warning():
        return
    # The stock entry is the last one equal to it: a user's own
    # "-W ignore::ResourceWarning" looks the same but comes first.
    index = len(filters)
    for position in range(len(filters) - 1, -1, -1):
        if filters[position] == _STOCK_IGNORE:
            index = position
            break
    filters.insert(index, entry)
    # An append of an existing entry changes nothing but tells the warnings
    # machinery that the filters changed (public API, unlike _filters_mutated).
    warnings.filterwarnings("default", category=ExecutorChurnWarning, append=True)
    _state.filter_added = entry


def _options_cover_our_warning() -> bool:
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
        if "executor_guard" not in option or option in _state.warnoptions_applied:
            continue
        _state.warnoptions_applied.add(option)
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
    entry = _state.filter_added
    if entry is None:
        return
    _state.filter_added = None
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


# -- fork ------------------------------------------------------------------------


# -- optional C hooks ----------------------------------------------------------


def _native_threads() -> bool:
    """Whether thread identities are the interpreter's own (the C hooks read those).

    gevent and eventlet replace ``threading.get_ident`` with their own, keyed
    by green thread: the Python hooks then keep attributing pools to them.
    """
    get_ident = threading.get_ident
    return isinstance(get_ident, BuiltinFunctionType) and get_ident is _registry._get_ident


def speedups_active() -> bool:
    """Whether the C hooks take the common cases in this process."""
    return _accel.speedups() is not None


def _after_fork_in_child() -> None:
    """Every lock of ours is new in the child, and its registry starts empty.

    Prefork servers fork from busy masters: another thread may have held any
    of these locks at the moment of the fork, and that thread does not exist
    in the child to release it.
    """
    from . import _diagnostics

    _registry.reset_after_fork()
    _accel.after_fork()
    _state.lock = threading.RLock()
    _patch._install_lock = threading.RLock()
    _diagnostics._lock = threading.Lock()
    guard = _state.guard
    if guard is not None:
        guard.registry = _registry.Registry(guard.config)


def _ensure_fork_hook() -> None:
    if not _state.fork_hook and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _state.fork_hook = True


# -- public API ----------------------------------------------------------------


def _activate(guard: Guard) -> None:
    _state.guard = guard
    _state.last = guard
    _ensure_fork_hook()
    _patch.install(guard)
    if guard.config.mode == "warn":
        _add_warning_filter()
    else:
        _remove_warning_filter()


def _deactivate() -> list[str]:
    _state.guard = None
    left = _patch.uninstall()
    _remove_warning_filter()
    return left


def install(**options: Any) -> Guard:
    """Start guarding every pool created from now on; return the active guard.

    Idempotent: called again, it applies the new options to the active guard
    and keeps what was recorded. After :func:`uninstall`, it resumes recording
    into the same registry (:func:`reset` empties it). Raises
    :class:`~executor_guard.ConfigError` for a bad option.
    """
    with _state.lock:
        guard = _state.guard
        if guard is None:
            guard = _state.installed
        if guard is None:
            guard = Guard(_config.from_options(None, **options))
        else:
            guard._reconfigure(_config.from_options(guard.config, **options))
        if not _state.suspended:
            _state.installed = guard
        _activate(guard)
        return guard


def uninstall() -> None:
    """Stop recording and restore the original classes; what was recorded stays.

    Pools still open keep the ``open`` shutdown mode: their later shutdown can
    no longer be seen.
    """
    with _state.lock:
        guard = _state.guard
        _state.suspended.clear()
        left = _deactivate()
        if guard is not None:
            guard.registry.forget_records()
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
        with _state.lock:
            guard = self._guard = Guard(self._config, self._policy)
            _state.suspended.append(_state.guard)
            _activate(guard)
        return guard

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        with _state.lock:
            guard = self._guard
            if _state.guard is guard and _state.suspended:
                outer = _state.suspended.pop()
                if outer is not None:
                    _activate(outer)
                else:
                    _deactivate()
                    _state.last = guard


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
    return _state.guard


def report() -> Report:
    """A report of the active guard, or of the last one when none is active."""
    guard = _state.guard or _state.last
    if guard is None:
        guard = Guard(_config.Config())
    return guard.report()


def reset() -> None:
    """Empty the registry of the active (or last) guard."""
    with _state.lock:
        guard = _state.guard or _state.last
        if guard is not None:
            guard.reset()


def is_installed() -> bool:
    """Whether a guard is recording now."""
    return _state.guard is not None
