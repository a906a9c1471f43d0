"""The start-up hook: activate the guard in any Python process when ``EXECUTOR_GUARD`` is set.

``executor_guard.pth`` (installed next to the package in site-packages) holds a
single line that the interpreter executes while processing site-packages::

    import os;"EXECUTOR_GUARD"in os.environ and exec("...")

With the variable unset, that line looks up one environment entry and imports
nothing; the string it would run is compiled only when the variable is set,
and it imports this module and calls :func:`activate` unless the value is
empty or off (``0``, ``false``, ``no``, ``off``: ``_config.FALSE``). The line
is as short as it can be because ``site`` compiles it in every process, twice
in a venv: compiling it is most of what the hook costs a process that does not
ask for the guard. A failure there is one line on stderr, once per process
(``site`` processes a venv's site-packages twice). :func:`activate`, in
coverage's ``process_startup()`` manner, runs once and never raises into the
host: a bad value prints one line naming the variable and the value and leaves
the guard off, unless ``EXECUTOR_GUARD_STRICT=1`` asks to exit with status 2.

Activation patches nothing until ``concurrent.futures`` is imported (see
``_patch``); structlog and psutil are imported only when something is reported.
The report at exit and the dump signal are the exit service's (``_exit``).
"""

from __future__ import annotations

import os
import sys

from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

    from ._guard import Guard


class _StartUp:
    """Whether this process has decided (activated or not); survives fork."""

    def __init__(self) -> None:
        self.done = False

    def reset(self) -> None:
        self.done = False

    def after_fork(self) -> None:
        """Nothing to do: a forked child has decided as its parent did."""


_STARTUP = _StartUp()
STATE.register("startup", _STARTUP)


def activate(environ: Optional[Mapping[str, str]] = None) -> Optional[Guard]:
    """Install the guard as the environment asks; return it, or None when off."""
    if _STARTUP.done:
        return None
    _STARTUP.done = True
    try:
        if environ is None and _is_launcher():
            # The launcher reads this same environment itself, reports a bad
            # value as its own usage error (status 2) and installs its own
            # guard: activating here too would say every problem twice.
            return None
        return _activate(os.environ if environ is None else environ)
    except (SystemExit, KeyboardInterrupt):
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

    config: Optional[_config.Config] = None
    problem: Optional[ConfigError] = None
    try:
        if _config.mode_from_environ(environ) is None:
            return None
        config = _config.from_environ(environ)
    except ConfigError as error:
        problem = error
    try:
        strict = _config.strict_from_environ(environ)
    except ConfigError as error:  # the switch itself is bad: say so and stay off
        problem, strict = error, False
    if problem is not None or config is None:
        consequence = "exiting (EXECUTOR_GUARD_STRICT=1)" if strict else "the guard is off"
        _say(f"{problem}; {consequence}")
        if strict:
            _flush()
            os._exit(2)
        return None

    from . import _exit
    from ._guard import install_config

    if config.fail_on != "never":
        # Only a launcher can turn the program's status into 3; this process has none.
        _say(
            f"{_config.ENV['fail_on']}={config.fail_on} ignored: only the executor-guard "
            "launcher and 'executor-guard report' set an exit status"
        )
        config = config.replace(fail_on="never")

    if config.dump_signal == "SIGTERM":
        # A dump handler on SIGTERM would keep the service alive through every stop.
        _say(
            f"{_config.ENV['dump_signal']}={environ.get(_config.ENV['dump_signal'])} ignored: "
            f"SIGTERM must still end the process ({_config.ENV['sigterm']}=1 writes the "
            "report before it does); choose another signal (USR1, USR2)"
        )
        config = config.replace(dump_signal=None)

    if config.report_path is not None:
        reason = _exit.check_report_path(config.report_path)
        if reason is not None:
            _say(
                f"EXECUTOR_GUARD_REPORT: cannot write a report to {config.report_path!r} "
                f"({reason}); guarding without a report"
            )
            config = config.replace(report_path=None)
        else:
            config = config.replace(report_path=_exit.resolve_report_path(config.report_path))
            if environ is os.environ and config.report_path is not None:
                # Children that start elsewhere write where this process was asked to.
                os.environ[_config.ENV["report_path"]] = config.report_path
    guard = install_config(config)
    if config.report_path is not None:
        _exit.claim_report_path()
    _exit.report_at_exit()
    if config.dump_signal is not None and not _exit.dump_on_signal(config.dump_signal):
        _say(
            f"EXECUTOR_GUARD_DUMP_SIGNAL={config.dump_signal} ignored: "
            "start-up did not run in the main thread"
        )
    if config.sigterm and not _exit.report_on_sigterm():
        _say("EXECUTOR_GUARD_SIGTERM=1 ignored: start-up did not run in the main thread")
    return guard


#: ``sys.argv[0]`` of the launcher's console script, as installers write it (a
#: program of the user's called ``executor-guard.py`` is not the launcher).
_LAUNCHER_SCRIPTS = ("executor-guard", "executor-guard.exe", "executor-guard-script.py")
#: The modules whose ``python -m`` is the launcher.
_LAUNCHER_MODULES = ("executor_guard", "executor_guard.__main__")


def _is_launcher() -> bool:
    """Whether this process is the launcher: ``executor-guard`` or ``python -m executor_guard``.

    At start-up ``sys.argv`` holds ``-m`` in place of the module's name, so
    ``-m`` is read from the interpreter's own command line (``sys.orig_argv``,
    or Linux's ``/proc`` on 3.9; elsewhere 3.9 cannot tell and activates).
    """
    first = sys.argv[0] if sys.argv else ""
    if os.path.basename(first).lower() in _LAUNCHER_SCRIPTS:
        return True
    if first != "-m":
        return False
    command = getattr(sys, "orig_argv", None)
    if command is None:
        try:
            with open("/proc/self/cmdline", "rb") as cmdline:
                command = os.fsdecode(cmdline.read()).split("\0")[:-1]
        except OSError:
            return False
    return _module_run(command[1:]) in _LAUNCHER_MODULES


def _module_run(options: list[str]) -> Optional[str]:
    """The MODULE of ``python [options] -m MODULE ...``, given the words after ``python``."""
    words = iter(options)
    for word in words:
        if word == "--check-hash-based-pycs":
            next(words, None)
        elif word.startswith("--"):
            continue
        elif not word.startswith("-") or word == "-":
            return None  # a script, or standard input
        else:
            for at, letter in enumerate(word[1:], start=2):
                if letter == "m":
                    return word[at:] or next(words, None)
                if letter == "c":
                    return None
                if letter in "XW":
                    if not word[at:]:
                        next(words, None)  # the value is the next word
                    break
    return None


def hook_file() -> Optional[str]:
    """The ``executor_guard.pth`` that ``site`` runs at start-up in this environment, or None."""
    import site

    directories = list(getattr(site, "getsitepackages", lambda: [])())
    if site.ENABLE_USER_SITE:
        directories.append(site.getusersitepackages())
    directories += [entry for entry in sys.path if entry not in directories]
    for directory in directories:
        path = os.path.join(directory, "executor_guard.pth")
        if os.path.isfile(path):
            return path
    return None


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
