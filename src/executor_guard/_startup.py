"""The start-up hook: activate the guard in any Python process when ``EXECUTOR_GUARD`` is set.

``executor_guard.pth`` (installed next to the package in site-packages) holds a
single line that the interpreter executes while processing site-packages::

    import os, sys; exec(...) if os.environ.get("EXECUTOR_GUARD", "") ... else None

With the variable unset, empty or ``0``, that line reads one environment entry
and imports nothing: start-up costs nothing measurable. Otherwise it calls
:func:`activate`, which, in coverage's ``process_startup()`` manner, runs once
even when the ``.pth`` is processed twice and never raises into the host: a bad
value prints one line naming the variable and the value and leaves the guard
off, unless ``EXECUTOR_GUARD_STRICT=1`` asks to exit with status 2 instead.

Activation patches nothing until ``concurrent.futures`` is imported (see
``_patch``); structlog and psutil are imported only when something is reported.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional

    from ._guard import Guard

#: Set once this process has decided (activated or not); survives fork.
_done = False
_dump_previous: Any = None


def activate(environ: Optional[Mapping[str, str]] = None) -> Optional[Guard]:
    """Install the guard as the environment asks; return it, or None when off."""
    global _done
    if _done:
        return None
    _done = True
    env = os.environ if environ is None else environ
    try:
        return _activate(env)
    except SystemExit:
        raise
    except BaseException as exc:  # the host must start whatever happens here
        try:
            from ._diagnostics import internal_error

            internal_error("activating from the environment", exc)
        except BaseException:
            pass
        return None


def _activate(environ: Mapping[str, str]) -> Optional[Guard]:
    from . import _config
    from .exceptions import ConfigError

    try:
        mode = _config.mode_from_environ(environ)
        if mode is None:
            return None
        config = _config.from_environ(environ, _config.Config(mode=mode))
    except ConfigError as error:
        strict = _config.strict_from_environ(environ)
        consequence = "exiting (EXECUTOR_GUARD_STRICT=1)" if strict else "the guard is off"
        _say(f"{error}; {consequence}")
        if strict:
            _flush()
            os._exit(2)
        return None

    from ._guard import install

    guard = install(**config.options())
    if config.report_path is not None and OWNER_ENV not in environ:
        os.environ[OWNER_ENV] = str(os.getpid())
    import atexit

    atexit.register(_report_at_exit)
    if config.report_path is not None:
        from . import _patch

        _patch.when_imported("multiprocessing.util", _arm_after_fork)
    if config.dump_signal is not None:
        install_dump_signal(config.dump_signal)
    return guard


def _say(message: str) -> None:
    from ._diagnostics import say

    say(message)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


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


class _Anchor:
    """A weak-referenceable owner for multiprocessing's after-fork registry."""


_ANCHOR = _Anchor()
_reported_in: Optional[int] = None


def _arm_after_fork(util: Any) -> None:
    """Make fork and forkserver workers write their report too.

    Those workers end with ``os._exit``, which skips ``atexit``; they do run
    multiprocessing's finalizers, registered anew in each worker by its
    after-fork hooks (registering earlier would be cleared by the worker).
    """
    util.register_after_fork(_ANCHOR, _arm_worker)


def _arm_worker(_: object) -> None:
    from multiprocessing import util

    util.Finalize(None, _report_at_exit, exitpriority=-100)


def _report_at_exit() -> None:
    """Write the JSON report at interpreter exit, once per process, if a path is set."""
    global _reported_in
    if _reported_in == os.getpid():
        return
    _reported_in = os.getpid()
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


_dump_signals: set[int] = set()


def install_dump_signal(name: str) -> None:
    """Write a report on signal ``name`` without stopping the process.

    Whatever handler the host has, or installs later with ``signal.signal``
    (servers such as gunicorn set theirs after interpreter start-up), is
    chained: our handler stays installed and calls it afterwards, and
    ``signal.getsignal`` keeps answering with the host's handler. Other signals
    are untouched. The handler itself only starts a thread: it runs in the main
    thread between two bytecodes, possibly while that thread holds the
    registry's lock, so taking the lock right there could deadlock.
    """
    import functools
    import signal
    import threading

    signum = int(getattr(signal, name))
    if signum in _dump_signals:
        return
    host: list[Any] = [signal.getsignal(signum)]
    original_signal = signal.signal
    original_getsignal = signal.getsignal

    def handler(number: int, frame: Any) -> None:
        threading.Thread(
            target=_dump, args=(number,), name="executor_guard-dump", daemon=True
        ).start()
        previous = host[0]
        if callable(previous):
            previous(number, frame)

    @functools.wraps(original_signal)
    def chaining_signal(sig: Any, action: Any) -> Any:
        if int(sig) != signum:
            return original_signal(sig, action)
        original_signal(signum, handler)  # raises where the host's call would
        previous, host[0] = host[0], action
        return previous

    @functools.wraps(original_getsignal)
    def chaining_getsignal(sig: Any) -> Any:
        if int(sig) == signum:
            return host[0]
        return original_getsignal(sig)

    try:
        original_signal(signum, handler)
    except ValueError:  # not the main thread: say so rather than fail
        _say(f"EXECUTOR_GUARD_DUMP_SIGNAL={name} ignored: start-up did not run in the main thread")
        return
    _dump_signals.add(signum)
    signal.signal = chaining_signal  # type: ignore[assignment]
    signal.getsignal = chaining_getsignal  # type: ignore[assignment]
