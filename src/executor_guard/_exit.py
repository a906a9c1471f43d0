"""How a process ends: the report at exit, and our signal handlers.

One service for the entry points (the start-up hook, the launcher):

* :func:`report_at_exit` writes the active guard's JSON report when the
  process ends, once per process, fork and forkserver pool workers included
  (they end with ``os._exit``, which skips ``atexit``);
* :func:`take_over` lets the launcher write the report and summary itself,
  in its own process only: the at-exit writer then stands down there rather
  than being unregistered from under whoever registered it;
* :func:`add_handler` and :func:`remove_handler` run our code on a signal
  while the host keeps its own handler: ``signal.signal`` and
  ``signal.getsignal`` are replaced, the originals recorded, and both (and
  the host's handler) put back exactly on removal, if they are still ours.
  :func:`dump_on_signal` uses them to write the report on a signal.

The guard is reached only through ``active_guard()``, ``guard.config`` and
``guard.report()``. Nothing here is imported before a guard is activated.
"""

from __future__ import annotations

import os

from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, Optional

    Action = Callable[[int], None]

#: The pid of the process that writes the configured report path itself;
#: every other process writes beside it (see :func:`report_path`).
OWNER_ENV = "EXECUTOR_GUARD_REPORT_OWNER"


def report_path(configured: Optional[str], *, for_dump: bool = False) -> Optional[str]:
    """Where this process writes its report (``{pid}`` still unexpanded), or None.

    Every process writes its own file. A configured path with ``{pid}`` is
    used as is. Without ``{pid}``, the process that first activated the guard
    (its pid travels to children in ``EXECUTOR_GUARD_REPORT_OWNER``) writes the
    path itself and every other process (forked workers, subprocesses) writes
    ``NAME-PID.EXT`` beside it, so nobody overwrites anybody. A dump asked for
    by signal without a configured path goes to the temporary directory.
    """
    if configured is None:
        if not for_dump:
            return None
        import tempfile

        return os.path.join(tempfile.gettempdir(), "executor_guard-{pid}.json")
    if "{pid}" in configured or os.environ.get(OWNER_ENV) == str(os.getpid()):
        return configured
    root, ext = os.path.splitext(configured)
    return f"{root}-{{pid}}{ext or '.json'}"


def claim_report_path(*, force: bool = False) -> None:
    """Make this process the one that writes the configured path itself.

    Without ``force``, only if no process (a parent) has claimed it already.
    """
    if force or OWNER_ENV not in os.environ:
        os.environ[OWNER_ENV] = str(os.getpid())


# -- the report at exit -----------------------------------------------------------


class _Process:
    """What this process has decided about its ending; a forked child starts afresh."""

    __slots__ = ("pid", "reported", "taken_over")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.reported = False
        self.taken_over = False


class _Anchor:
    """A weak-referenceable owner for multiprocessing's after-fork registry."""


class _Service:
    """The at-exit registration, made once per interpreter (a forked child inherits it)."""

    __slots__ = ("anchor", "process", "registered")

    def __init__(self) -> None:
        self.registered = False
        self.process = _Process()
        #: While it lives, fork workers arm their finalizer; dropped, it unarms.
        self.anchor: Optional[_Anchor] = None


_service = _Service()


def _this_process() -> _Process:
    """The ending state of the running process (renewed when the pid changed).

    :func:`after_fork_in_child` renews it at once; the pid check also covers a
    fork that ran no Python after-fork hook.
    """
    if _service.process.pid != os.getpid():
        _service.process = _Process()
    return _service.process


def report_at_exit() -> None:
    """Write the active guard's report when this process ends, if it has a report path.

    Idempotent. Registers one ``atexit`` writer, and arms fork and
    forkserver pool workers to write theirs from multiprocessing's
    finalizers, registered anew in each worker by its after-fork hooks
    (registering earlier would be cleared by the worker).
    """
    if _service.registered:
        return
    import atexit

    atexit.register(_at_exit)
    _service.registered = True
    _service.anchor = _Anchor()
    from . import _patch

    _patch.when_imported("multiprocessing.util", _arm_after_fork)


def take_over() -> None:
    """This process writes its report (and summary) itself: the at-exit writer stands down.

    Only in the calling process: its forked children and pool workers still
    write their own reports.
    """
    _this_process().taken_over = True


def _arm_after_fork(util: Any) -> None:
    if _service.anchor is not None:  # not reset in the meantime
        util.register_after_fork(_service.anchor, _arm_worker)


def _arm_worker(_: object) -> None:
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=-100)


def _at_exit() -> None:
    """The at-exit writer: once per process, unless the process took its report over."""
    process = _this_process()
    if process.reported or process.taken_over or not _service.registered:
        return
    process.reported = True
    try:
        from ._guard import active_guard

        guard = active_guard()
        if guard is None:
            return
        path = report_path(guard.config.report_path)
        if path is None:
            return
        guard.report().write_json(path)
    except Exception as exc:
        _say(f"could not write the report at exit: {exc}")


def _say(message: str) -> None:
    from ._diagnostics import say

    say(message)


def _internal_error(where: str, exc: BaseException) -> None:
    from ._diagnostics import internal_error

    internal_error(where, exc)


# -- signals ------------------------------------------------------------------------


class _Signals:
    """Our signal handlers, the host's handler behind each, and the functions we replaced."""

    __slots__ = ("actions", "handlers", "host", "originals", "replacements")

    def __init__(self) -> None:
        #: signal number -> what we run on it
        self.actions: dict[int, Action] = {}
        #: signal number -> our handler, installed with the original signal.signal
        self.handlers: dict[int, Callable[[int, Optional[FrameType]], None]] = {}
        #: signal number -> the host's handler: what getsignal answers, called after ours
        self.host: dict[int, Any] = {}
        #: (signal.signal, signal.getsignal) as found, while ours replace them
        self.originals: Optional[tuple[Any, Any]] = None
        self.replacements: Optional[tuple[Any, Any]] = None


_signals = _Signals()


def add_handler(signum: int, action: Action) -> bool:
    """Run ``action(signum)`` on signal ``signum``, then the host's handler, if callable.

    Whatever handler the host has, or installs later with ``signal.signal``
    (servers such as gunicorn set theirs after interpreter start-up), is
    chained: ours stays installed and calls it afterwards, and
    ``signal.getsignal`` answers with the host's handler. A default or
    ignoring host disposition is not carried out: ours replaces it. Other
    signals are untouched. ``action`` runs in the main thread between two
    bytecodes, so it must not take locks the interrupted code may hold.

    Returns False (and changes nothing) where Python refuses signal handlers:
    outside the main thread. Idempotent per signal: the first action stays.
    """
    import signal

    if signum in _signals.handlers:
        return True
    real_signal, real_getsignal = _signals.originals or (signal.signal, signal.getsignal)
    host = real_getsignal(signum)

    def handler(number: int, frame: Optional[FrameType]) -> None:
        ours = _signals.actions.get(number)
        if ours is not None:
            try:
                ours(number)
            except Exception as exc:  # the host's handler runs whatever happens to ours
                _internal_error(f"handling signal {number}", exc)
        previous = _signals.host.get(number)
        if callable(previous):
            previous(number, frame)

    try:
        real_signal(signum, handler)
    except ValueError:  # not the main thread
        return False
    _signals.actions[signum] = action
    _signals.handlers[signum] = handler
    _signals.host[signum] = host
    if _signals.originals is None:
        _replace_signal_functions(real_signal, real_getsignal)
    return True


def _replace_signal_functions(real_signal: Any, real_getsignal: Any) -> None:
    import functools
    import signal

    @functools.wraps(real_signal)
    def chaining_signal(sig: Any, action: Any) -> Any:
        handler = _signals.handlers.get(sig) if isinstance(sig, int) else None
        if handler is None or not (callable(action) or action in (signal.SIG_DFL, signal.SIG_IGN)):
            return real_signal(sig, action)  # not ours, or refused as the host's call would be
        real_signal(sig, handler)  # raises where the host's own call would
        previous = _signals.host[int(sig)]
        _signals.host[int(sig)] = action
        return previous

    @functools.wraps(real_getsignal)
    def chaining_getsignal(sig: Any) -> Any:
        if isinstance(sig, int) and int(sig) in _signals.handlers:
            return _signals.host[int(sig)]
        return real_getsignal(sig)

    _signals.originals = (real_signal, real_getsignal)
    _signals.replacements = (chaining_signal, chaining_getsignal)
    # Wrapped functions typed loosely, yet called exactly as the originals are.
    signal.signal = chaining_signal  # type: ignore[assignment]
    signal.getsignal = chaining_getsignal  # type: ignore[assignment]


def remove_handler(signum: int) -> bool:
    """Stop running our action on ``signum``; give the host back its handler.

    The host's handler is reinstalled only if ours is still the one installed
    (code holding the original ``signal.signal`` may have replaced it); the
    original ``signal.signal`` and ``signal.getsignal`` come back with the
    last handler removed, each only if it is still ours. Returns whether the
    host's handler is in place again.
    """
    import signal

    handler = _signals.handlers.pop(signum, None)
    if handler is None:
        return False
    _signals.actions.pop(signum, None)
    host = _signals.host.pop(signum, None)
    restored = False
    if _signals.originals is not None:  # always, while a handler is ours
        real_signal, real_getsignal = _signals.originals
        if real_getsignal(signum) is handler:
            # None: the host's handler was not installed from Python; the default
            # is the nearest we can restore.
            try:
                real_signal(signum, host if host is not None else signal.SIG_DFL)
                restored = True
            except ValueError:  # not the main thread: ours stays, inert
                pass
    if not _signals.handlers:
        _restore_signal_functions()
    return restored


def _restore_signal_functions() -> None:
    """Put the original functions back where ours are still in place.

    Where someone wrapped ours since, ours stay under theirs and pass
    everything straight through, since no signal is ours any more.
    """
    import signal

    if _signals.originals is None or _signals.replacements is None:
        return
    (real_signal, real_getsignal), (ours_signal, ours_getsignal) = (
        _signals.originals,
        _signals.replacements,
    )
    if signal.signal is ours_signal:
        signal.signal = real_signal
    if signal.getsignal is ours_getsignal:
        signal.getsignal = real_getsignal
    _signals.originals = _signals.replacements = None


def dump_on_signal(name: str) -> bool:
    """Write the report on signal ``name`` (``SIGUSR1``) without stopping the process.

    The handler only starts a thread: it runs in the main thread between two
    bytecodes, possibly while that thread holds the registry's lock, so
    making the report right there could deadlock. Returns False outside the
    main thread, where no handler can be installed.
    """
    import signal

    return add_handler(int(getattr(signal, name)), _start_dump)


def _start_dump(signum: int) -> None:
    import threading

    threading.Thread(target=_dump, args=(signum,), name="executor_guard-dump", daemon=True).start()


def _dump(signum: int) -> None:
    try:
        from ._guard import active_guard

        guard = active_guard()
        if guard is None:
            return
        path = report_path(guard.config.report_path, for_dump=True)
        if path is None:
            return
        written = guard.report().write_json(path)
        _say(f"report written to {written} on signal {signum}")
    except Exception as exc:
        _say(f"could not write the report on signal {signum}: {exc}")


# -- the package's state protocol ---------------------------------------------------


def after_fork_in_child() -> None:
    """In a forked child: its ending is its own (not reported, not taken over).

    The at-exit registration, the worker arming and our signal handlers are
    inherited with the interpreter and stay valid.
    """
    _service.process = _Process()


def reset() -> None:
    """Undo everything (tests): signal handlers and functions, the at-exit writer."""
    for signum in list(_signals.handlers):
        remove_handler(signum)
    if _service.registered:
        import atexit

        atexit.unregister(_at_exit)
    # Dropping the anchor drops its entry in multiprocessing's weak registry.
    _service.registered = False
    _service.anchor = None
    _service.process = _Process()


class _Part:
    """This module as one part of the package's state (``_state``)."""

    def reset(self) -> None:
        reset()

    def after_fork(self) -> None:
        after_fork_in_child()


STATE.register("exit", _Part())
