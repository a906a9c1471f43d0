"""How a process ends: the report at exit, and our signal handlers.

One service for the entry points (the start-up hook, the launcher):

* :func:`report_at_exit` writes the active guard's JSON report when the
  process ends, once per process, fork and forkserver pool workers included
  (they end with ``os._exit``, which skips ``atexit``);
* :func:`take_over` lets the launcher write the report and summary itself,
  in its own process only: the at-exit writer then stands down there rather
  than being unregistered from under whoever registered it, and
  :func:`finish` runs whichever ending is this process's, once;
* ``os._exit`` is wrapped (coverage's ``patch = _exit``) so that a program
  that leaves through it still gets its report, and the launcher still
  decides the status;
* a *spool* directory (``EXECUTOR_GUARD_SPOOL``, made by the launcher) where
  every guarded descendant leaves its report at exit, so the launcher's
  summary, report and ``--fail-on`` cover the whole process tree;
* :func:`report_on_sigterm` writes the report (and the launcher's summary)
  when SIGTERM would end the process, which then still ends by SIGTERM;
* :func:`check_report_path` finds a report path that cannot be written
  before the program runs;
* :func:`add_handler` and :func:`remove_handler` run our code on a signal
  while the host keeps its own handler: ``signal.signal`` and
  ``signal.getsignal`` are replaced, the originals recorded, and both (and
  the host's handler) put back exactly on removal, if they are still ours.
  :func:`dump_on_signal` uses them to write the report on a signal.

The guard is reached only through ``active_guard()``, ``guard.config`` and
``guard.report()``. Nothing here is imported before a guard is activated.
"""

from __future__ import annotations

import _thread
import operator
import os
import sys

from ._callsite import running
from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, Optional, TypeVar

    Action = Callable[[int], None]
    _T = TypeVar("_T")

#: The pid of the process that writes the configured report path itself;
#: every other process writes beside it (see :func:`report_path`).
OWNER_ENV = "EXECUTOR_GUARD_REPORT_OWNER"
#: The directory where guarded descendants of the launcher leave their reports.
SPOOL_ENV = "EXECUTOR_GUARD_SPOOL"


def report_path(configured: Optional[str], *, for_dump: bool = False) -> Optional[str]:
    """Where this process writes its report (``{pid}`` still unexpanded), or None.

    Every process writes its own file. A configured path with ``{pid}`` is
    used as is. Without ``{pid}``, the process that first activated the guard
    (its pid travels to children in ``EXECUTOR_GUARD_REPORT_OWNER``) writes the
    path itself and every other process (forked workers, subprocesses) writes
    ``NAME-PID.EXT`` beside it, so nobody overwrites anybody; under the
    launcher, whose report covers the whole process tree, they write nothing
    there (their reports go to the spool). A dump asked for by signal without
    a configured path goes to the temporary directory.
    """
    if configured is None:
        if not for_dump:
            return None
        import tempfile

        return os.path.join(tempfile.gettempdir(), "executor_guard-{pid}.json")
    if "{pid}" in configured or os.environ.get(OWNER_ENV) == str(os.getpid()):
        return configured
    if os.environ.get(SPOOL_ENV):
        return None  # under the launcher, which writes the path for the whole tree
    root, ext = os.path.splitext(configured)
    return f"{root}-{{pid}}{ext or '.json'}"


def claim_report_path(*, force: bool = False) -> None:
    """Make this process the one that writes the configured path itself.

    Without ``force``, only if no process (a parent) has claimed it already.
    """
    if force or OWNER_ENV not in os.environ:
        os.environ[OWNER_ENV] = str(os.getpid())


def resolve_report_path(configured: Optional[str]) -> Optional[str]:
    """``configured`` made absolute against today's working directory (``{pid}`` kept).

    Resolved at start, so that a program that changes directory does not move
    its report.
    """
    if configured is None:
        return None
    return os.path.abspath(os.path.expanduser(configured))


def check_report_path(configured: str) -> Optional[str]:
    """Why a report could not be written to ``configured``, or None when it can.

    Checks what the atomic write needs: the directory exists, is a directory
    and takes new files, and the path itself is not a directory.
    """
    target = os.path.abspath(os.path.expanduser(configured.replace("{pid}", str(os.getpid()))))
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        return "it is a directory"
    if not os.path.exists(directory):
        return f"the directory {directory!r} does not exist"
    if not os.path.isdir(directory):
        return f"{directory!r} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory!r} is not writable"
    return None


# -- the report at exit -----------------------------------------------------------


class _Process:
    """What this process has decided about its ending; a forked child starts afresh."""

    __slots__ = ("die_of", "ending", "finisher", "pid", "reported", "signalled", "taken_over")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.reported = False
        self.taken_over = False
        #: Ending on a signal: output must not block (see :func:`write_stderr`).
        self.signalled = False
        #: The launcher's ending (summary, report, --fail-on): status -> status.
        self.finisher: Optional[Callable[[int], int]] = None
        #: The thread writing this process's ending now, if any (see :func:`_ending`).
        self.ending: Optional[int] = None
        #: A SIGTERM that landed during that ending: the process ends by it afterwards.
        self.die_of: Optional[int] = None


class _Anchor:
    """A weak-referenceable owner for multiprocessing's after-fork registry."""


class _Service:
    """The at-exit registration, made once per interpreter (a forked child inherits it)."""

    __slots__ = ("anchor", "dumps", "pid", "process", "registered", "wrapped")

    def __init__(self) -> None:
        self.registered = False
        #: The process that registered (a forked child has another pid).
        self.pid = os.getpid()
        self.process = _Process()
        #: While it lives, fork workers arm their finalizer; dropped, it unarms.
        self.anchor: Optional[_Anchor] = None
        #: os function name -> (the original, ours) while ours is installed.
        self.wrapped: dict[str, tuple[Any, Any]] = {}
        #: Dump threads started on the dump signal, joined before the process ends.
        self.dumps: list[Any] = []


_service = _Service()

#: Seconds the end of the process waits at most for a dump under way.
_DUMP_JOIN = 5.0


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
    _service.pid = os.getpid()
    _service.anchor = _Anchor()
    _wrap_os_functions()
    from . import _patch

    _patch.when_imported("multiprocessing.util", _arm_after_fork)


def take_over(finisher: Optional[Callable[[int], int]] = None) -> None:
    """This process writes its report (and summary) itself: the at-exit writer stands down.

    Only in the calling process: its forked children and pool workers still
    write their own reports. ``finisher(status)`` is the process's own
    ending, run once by :func:`finish` (from ``os._exit`` or SIGTERM too); it
    returns the status to exit with.
    """
    process = _this_process()
    process.taken_over = True
    process.finisher = finisher


def finish(status: int, *, figures: bool = True) -> int:
    """End this process's guarding once: its finisher, else the at-exit writer.

    Returns the status the process should exit with (a finisher may turn 0
    into the ``--fail-on`` status). Called again, it changes nothing.
    ``figures=False`` leaves psutil's process figures out of the report.
    """
    _join_dumps()
    process = _this_process()
    finisher = process.finisher
    if finisher is not None:
        # The ending is under way before anything a SIGTERM landing now would
        # find done and skip (see _ending).
        process.ending = _thread.get_ident()
        process.finisher = None
        process.reported = True
        return _ending(lambda: finisher(status))
    if not process.taken_over:
        _at_exit(figures=figures)
    return status


def _ending(write: Callable[[], _T]) -> _T:
    """Run ``write`` (this process's report, summary) as the ending under way.

    A SIGTERM that lands meanwhile in this thread cannot end the process
    there: the report would be lost half-written. The ending finishes, then
    the process ends by that signal.
    """
    process = _this_process()
    process.ending = _thread.get_ident()
    try:
        return write()
    finally:
        process.ending = None
        if process.die_of is not None:
            _die_of(process.die_of)


def _wrap_os_functions() -> None:
    """Make ``os._exit`` and ``os.exec*`` end our guarding first.

    A program (or a forked child) that leaves through ``os._exit``, or
    replaces itself with ``os.execv``/``os.execve`` (which the other
    ``exec*`` functions call), skips ``atexit``: its report is written first.
    """
    if _service.wrapped:
        return
    original_exit = os._exit

    def _exit(*args: Any, **kwargs: Any) -> Any:
        try:
            (status,) = args or (kwargs["status"],)
            number = operator.index(status)
        except Exception:
            return original_exit(*args, **kwargs)  # the original's own TypeError
        if len(args) + len(kwargs) == 1:
            number = _end_before_leaving(number)
        return original_exit(number)

    _wrap("_exit", _exit, original_exit)
    for name in ("execv", "execve"):
        original = getattr(os, name, None)
        if original is not None:
            _wrap(name, _exec_wrapper(original), original)


def _exec_wrapper(original: Any) -> Any:
    def exec_function(*args: Any, **kwargs: Any) -> Any:
        # No status: the new program's will be the process's (-1 is no --fail-on).
        _end_before_leaving(-1)
        return original(*args, **kwargs)

    return exec_function


def _wrap(name: str, ours: Any, original: Any) -> None:
    ours.__name__ = original.__name__
    ours.__doc__ = original.__doc__
    ours.__wrapped__ = original
    _service.wrapped[name] = (original, ours)
    setattr(os, name, ours)


def _end_before_leaving(status: int) -> int:
    """Finish before the process leaves without ``atexit``; the status to leave with."""
    try:
        if _service.pid == os.getpid():
            return finish(status)
        if _imports_done():  # a forked child: nothing may be imported now
            return finish(status, figures="psutil" in sys.modules)
    except BaseException:  # the process leaves whatever happens to us
        pass
    return status


def _imports_done() -> bool:
    """Whether a report can be made without importing anything.

    In a forked child another thread of the parent may have held an import
    lock at the fork, for ever now: ``os._exit`` there must not import.
    """
    return all(
        name in sys.modules
        for name in ("json", "tempfile", "executor_guard._report", "executor_guard._process")
    )


def _unwrap_os_functions() -> None:
    for name, (original, ours) in _service.wrapped.items():
        if getattr(os, name, None) is ours:
            setattr(os, name, original)
    _service.wrapped.clear()


def real_os_exit(status: int) -> None:
    """Leave at once, without our ending (it has run)."""
    entry = _service.wrapped.get("_exit")
    exit_now = entry[0] if entry is not None else os._exit
    exit_now(status)


def _arm_after_fork(util: Any) -> None:
    if _service.anchor is not None:  # not reset in the meantime
        util.register_after_fork(_service.anchor, _arm_worker)


def _arm_worker(_: object) -> None:
    from multiprocessing import util

    util.Finalize(None, _at_exit, exitpriority=-100)


def _at_exit(figures: bool = True) -> None:
    """The at-exit writer: once per process, unless the process took its report over."""
    process = _this_process()
    if process.reported or process.taken_over or not _service.registered:
        return
    process.ending = _thread.get_ident()  # first: see finish()
    process.reported = True
    _ending(lambda: _write_at_exit(figures))


def _write_at_exit(figures: bool) -> None:
    try:
        from ._guard import active_guard

        guard = active_guard()
        if guard is None:
            return
        path = report_path(guard.config.report_path)
        spool = os.environ.get(SPOOL_ENV) or None
        if path is None and spool is None:
            return
        if not guard.snapshot().sites and os.environ.get(OWNER_ENV) != str(os.getpid()):
            # A worker or helper process that built no pool leaves no file behind.
            return
        report = guard.report(process_figures=figures)
    except Exception as exc:
        _say(f"could not make the report at exit: {exc}")
        return
    if path is not None:
        write_report(report, path)
    if spool is not None:
        spool_report(report, spool)


def write_report(report: Any, path: str) -> Optional[str]:
    """Write ``report`` to ``path``; a failure is one line naming the path, not a raise."""
    try:
        written: str = report.write_json(path)
        return written
    except Exception as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        _say(f"could not write the report to {path!r}: {reason}")
        return None


def spool_report(report: Any, spool: str) -> None:
    """Leave this process's report in the launcher's spool (silently gone if the spool is)."""
    if not os.path.isdir(spool):
        return  # the launcher has finished: nobody is left to read it
    write_report(report, os.path.join(spool, "{pid}.json"))


def spooled(spool: str) -> list[str]:
    """The report files guarded descendants left in ``spool`` (complete ones only)."""
    try:
        names = sorted(os.listdir(spool))
    except OSError:
        return []
    # Temporary files start with a dot: a write still under way is not read.
    return [os.path.join(spool, n) for n in names if n.endswith(".json") and n[:1] != "."]


def _say(message: str) -> None:
    from ._diagnostics import say

    say(message)


def _internal_error(where: str, exc: BaseException) -> None:
    from ._diagnostics import internal_error

    internal_error(where, exc)


# -- signals ------------------------------------------------------------------------


class _Signals:
    """Our signal handlers, the host's handler behind each, and the functions we replaced."""

    __slots__ = ("actions", "handlers", "honour_ignore", "host", "originals", "replacements")

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
        #: Signals whose ignoring by the host is carried out for real (SIGTERM):
        #: an ignored disposition is what exec() passes on to children.
        self.honour_ignore: set[int] = set()


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


def handling(signum: int) -> bool:
    """Whether one of our handlers is installed for ``signum``."""
    return signum in _signals.handlers


def _replace_signal_functions(real_signal: Any, real_getsignal: Any) -> None:
    import functools
    import signal

    @functools.wraps(real_signal)
    def chaining_signal(sig: Any, action: Any) -> Any:
        handler = _signals.handlers.get(sig) if isinstance(sig, int) else None
        if handler is None or not (callable(action) or action in (signal.SIG_DFL, signal.SIG_IGN)):
            return real_signal(sig, action)  # not ours, or refused as the host's call would be
        if action is signal.SIG_IGN and int(sig) in _signals.honour_ignore:
            real_signal(sig, action)  # ignored for real; ours comes back with the next
        else:
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


def report_on_sigterm() -> bool:
    """On SIGTERM, finish (report, launcher summary), then end by SIGTERM as we would have.

    Only when the host's disposition is the default one, which ends the
    process: a host handler is chained and decides (a graceful shutdown
    reports on its way out), an ignored SIGTERM stays ignored. The process
    then dies of the signal itself, so its parent sees the status SIGTERM
    gives (143 from a shell). Returns False outside the main thread.
    """
    import signal

    signum = int(signal.SIGTERM)
    _signals.honour_ignore.add(signum)
    if not add_handler(signum, _on_sigterm):
        return False
    if _signals.host.get(signum) is signal.SIG_IGN and _signals.originals is not None:
        _signals.originals[0](signum, signal.SIG_IGN)  # started with SIGTERM ignored: keep it
    return True


def _on_sigterm(signum: int) -> None:
    import signal

    host = _signals.host.get(signum)
    if host is not signal.SIG_DFL and host is not None:
        return  # the host's handler (or SIG_IGN) decides; chained by our handler
    real_signal = _signals.originals[0] if _signals.originals is not None else signal.signal
    try:
        # A second SIGTERM while we finish ends the process at once, as it would.
        real_signal(signum, signal.SIG_DFL)
    except Exception:
        pass
    process = _this_process()
    process.signalled = True
    # The mark is trusted only with the ending on the stack: a lost exit may have left it.
    ending = (finish.__code__, _at_exit.__code__, _ending.__code__)
    if process.ending == _thread.get_ident() and running(sys._getframe(1), ending):
        process.die_of = signum  # after the report under way: see _ending
        return
    try:
        finish(128 + signum)
    except BaseException:  # the process ends whatever happens to us
        pass
    _die_of(signum)


def write_stderr(text: str) -> None:
    """Write ``text`` to stderr; while ending on a signal, never block on a full pipe.

    A signal handler runs between two bytecodes of whatever the program was
    doing, possibly writing to that same stream: Python's buffered stderr is
    bypassed then, and each chunk waits at most a second for the descriptor.
    """
    if not _this_process().signalled:
        sys.stderr.write(text)
        sys.stderr.flush()
        return
    import select

    data = text.encode("utf-8", "replace")
    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else 2
    except Exception:
        fd = 2
    while data:
        try:
            _, writable, _ = select.select([], [fd], [], 1.0)
            if not writable:
                return  # nobody reads: the process must still end
            written = os.write(fd, data[:4096])
        except (OSError, ValueError):
            return
        data = data[written:]


def _die_of(signum: int) -> None:
    """End the process by ``signum`` with the default disposition, as the kernel would."""
    import signal

    real_signal = _signals.originals[0] if _signals.originals is not None else signal.signal
    try:
        real_signal(signum, signal.SIG_DFL)
    except Exception:  # not the main thread: the handler set SIG_DFL already
        pass
    try:
        os.kill(os.getpid(), signum)
    except Exception:
        pass
    real_os_exit(128 + signum)  # the signal was blocked: the nearest status


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

    thread = threading.Thread(target=_dump, args=(signum,), name="executor_guard-dump", daemon=True)
    _service.dumps[:] = [t for t in _service.dumps if t.is_alive()] + [thread]
    thread.start()


def _join_dumps() -> None:
    """Let dumps under way finish (a few seconds at most) before the process ends.

    A dump thread still running while the interpreter ends (3.12) can turn an
    uncaught Ctrl-C's status 130 into 1; the final report follows anyway.
    """
    import threading

    current = threading.current_thread()
    for thread in list(_service.dumps):
        if thread is not current:
            thread.join(_DUMP_JOIN)
    _service.dumps.clear()


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
    inherited with the interpreter and stay valid, except the SIGTERM
    report: a child (a pool worker) gets the host's default back, so that
    ``terminate()`` ends it at once even inside a long C call.
    """
    _service.process = _Process()
    import signal

    signum = int(signal.SIGTERM)
    if signum in _signals.handlers and _signals.host.get(signum) is signal.SIG_DFL:
        remove_handler(signum)


def reset() -> None:
    """Undo everything (tests): signal handlers and functions, the at-exit writer."""
    for signum in list(_signals.handlers):
        remove_handler(signum)
    if _service.registered:
        import atexit

        atexit.unregister(_at_exit)
    _unwrap_os_functions()
    _signals.honour_ignore.clear()
    # Dropping the anchor drops its entry in multiprocessing's weak registry.
    _service.registered = False
    _service.anchor = None
    _service.process = _Process()
    _service.dumps.clear()


class _Part:
    """This module as one part of the package's state (``_state``)."""

    def reset(self) -> None:
        reset()

    def after_fork(self) -> None:
        after_fork_in_child()


STATE.register("exit", _Part())
