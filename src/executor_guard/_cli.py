"""The command line: ``executor-guard [OPTIONS] SCRIPT|-m MODULE [ARGS]`` and ``report``.

The target runs in this process exactly as ``python`` would run it (the habits
of coverage's ``PyRunner`` and memray's ``run``): the same ``sys.argv``,
``__name__``, ``__file__``, ``sys.path[0]``, exit status and traceback. Nothing
here imports ``multiprocessing`` before the target runs, so classes defined in
the target still pickle into spawn and forkserver workers.

Exit statuses are mapped in one place, :func:`main`: the target's own status,
2 for bad options or unreadable report files, 3 for ``--fail-on`` findings.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

from . import _config
from ._version import __version__
from .exceptions import ConfigError

PROG = "executor-guard"
EXIT_USAGE = 2
EXIT_FINDINGS = 3
FAIL_ON = ("never", "churn", "any")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: ``prog: error: argument --x: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _typed(parse: Any) -> Any:
    """Adapt a ``_config`` parser to argparse, keeping its message about the value."""

    def convert(text: str) -> Any:
        try:
            return parse(text, "")
        except ConfigError as error:
            raise argparse.ArgumentTypeError(
                f"invalid value {error.value!r} ({error.expected})"
            ) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _choice(choices: tuple[str, ...]) -> Any:
    return _typed(lambda value, source: _config.parse_choice(value, source, choices))


def add_options(parser: argparse.ArgumentParser, options: Sequence[_config.Option]) -> None:
    """A flag for each option that has one, its value stored under the option's name.

    A value is parsed as it is read, so a bad one is argparse's one-line
    usage error; a repeatable flag collects its values, parsed as a whole by
    :func:`options_given`.
    """
    for option in options:
        if option.flag is None:
            continue
        arguments = option.flag_arguments()
        if arguments["action"] == "store":
            arguments["type"] = _typed(option.parse)
        parser.add_argument(option.flag, dest=option.name, **arguments)


def options_given(
    namespace: argparse.Namespace, options: Sequence[_config.Option]
) -> dict[str, Any]:
    """The validated values of the flags given on the command line, by option name."""
    given: dict[str, Any] = {}
    for option in options:
        value = getattr(namespace, option.name, None)
        if option.flag is None or value is None:
            continue
        given[option.name] = option.parse(value, option.flag) if option.repeatable else value
    return given


def _run_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        usage=(
            f"{PROG} [OPTIONS] SCRIPT [ARGS...]\n"
            f"       {PROG} [OPTIONS] -m MODULE [ARGS...]\n"
            f"       {PROG} report [--format text|json] FILE.json [FILE.json ...]"
        ),
        description=(
            "Run a Python program with executor_guard watching every concurrent.futures "
            "pool it creates; print the call sites that create pools repeatedly."
        ),
    )
    parser.add_argument("--version", action="version", version=f"executor_guard {__version__}")
    add_options(parser, _config.OPTIONS)
    parser.add_argument(
        "--fail-on",
        type=_choice(FAIL_ON),
        default="never",
        metavar="{never,churn,any}",
        help="exit with status 3 when the program exited 0 but findings of this level exist",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr at exit")
    parser.add_argument(
        "-m",
        dest="module",
        action="store_true",
        help="run a library module as a script (like python -m)",
    )
    parser.add_argument("target", nargs="?", metavar="SCRIPT|MODULE", help="the program to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


def _report_parser() -> _Parser:
    parser = _Parser(
        prog=f"{PROG} report",
        description="Render one or more JSON reports (merged by call site) as text or JSON.",
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("files", nargs="+", metavar="FILE.json")
    return parser


def _report_command(argv: Sequence[str]) -> int:
    from ._report import ReportFileError, load_all

    options = _report_parser().parse_args(list(argv))
    try:
        report = load_all(options.files)
    except ReportFileError as error:
        sys.stderr.write(f"{PROG} report: error: {error}\n")
        return EXIT_USAGE
    sys.stdout.write(report.to_json() if options.format == "json" else report.to_text())
    return 0


# -- running the target -----------------------------------------------------


def _script_code(path: str) -> types.CodeType:
    import io
    import tokenize

    with open(path, "rb") as stream:
        source = stream.read()
    encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    text = source.decode(encoding)
    return compile(text, path, "exec", dont_inherit=True)


def _run_script(path: str, args: list[str]) -> None:
    """Run ``path`` as ``python path args...`` would, in a fresh ``__main__``."""
    import importlib.machinery

    # Like the interpreter: __file__ is the path joined to the working
    # directory, unnormalised; sys.path[0] is its real directory.
    absolute = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    if os.path.isdir(absolute) or (not absolute.endswith((".py", ".pyw")) and _is_zip(absolute)):
        import runpy

        _set_path0(absolute)
        sys.argv = [path, *args]
        runpy.run_path(absolute, run_name="__main__")
        return
    code = _script_code(absolute)
    _set_path0(os.path.dirname(os.path.realpath(absolute)))
    main = types.ModuleType("__main__")
    main.__file__ = absolute
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", absolute)
    main.__dict__.update(__builtins__=sys.modules["builtins"], __cached__=None, __spec__=None)
    main.__package__ = None
    sys.modules["__main__"] = main
    sys.argv = [path, *args]
    exec(code, main.__dict__)


def _is_zip(path: str) -> bool:
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _run_module(name: str, args: list[str]) -> None:
    """Run module ``name`` as ``python -m name args...`` would."""
    import runpy

    _set_path0(os.getcwd())
    sys.argv = [name, *args]
    # The function CPython's own -m switch calls: it replaces __main__ and
    # sets sys.argv[0] to the module's file, exactly as `python -m` does.
    runpy._run_module_as_main(name, alter_argv=True)  # type: ignore[attr-defined]


def _set_path0(directory: str) -> None:
    """Put the target's directory first on sys.path, unless -I / -P say not to."""
    if sys.flags.isolated or getattr(sys.flags, "safe_path", False):
        return
    if sys.path:
        sys.path[0] = directory
    else:
        sys.path.insert(0, directory)


def _strip_launcher_frames(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """Drop the traceback entries of this launcher, so it reads as under ``python``."""
    import runpy

    ours = os.path.dirname(os.path.abspath(__file__))
    skipped = {os.path.abspath(runpy.__file__)}
    while tb is not None:
        filename = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not (
            filename.startswith(ours + os.sep)
            or filename in skipped
            or tb.tb_frame.f_code.co_filename.startswith("<frozen runpy")
        ):
            break
        tb = tb.tb_next
    return tb


def _exit_status(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


def _install(options: argparse.Namespace) -> Any:
    """Install the guard from the environment, then the command line on top."""
    from . import _exit
    from ._guard import install

    config = _config.from_environ(os.environ)
    config = config.replace(**options_given(options, _config.OPTIONS))
    # Children (subprocesses, spawn workers) read the same settings at start-up.
    exported = _config.to_environ(config)
    if config.report_path is not None and "{pid}" not in config.report_path:
        # One file per process: without {pid}, children would overwrite ours.
        exported.pop(_config.ENV["report_path"], None)
    os.environ.update(exported)
    guard = install(**config.options())
    # If the environment activated the guard at start-up, its at-exit writer
    # stands down in this process: the launcher writes report and summary.
    _exit.take_over()
    if config.report_path is not None:
        _exit.claim_report_path(force=True)
    if config.dump_signal is not None:
        _exit.dump_on_signal(config.dump_signal)
    return guard


def _finish(guard: Any, options: argparse.Namespace, status: int) -> int:
    """Print the summary and write the report; map findings to --fail-on."""
    from . import _exit
    from ._diagnostics import internal_error, say

    failing = status == 0 and options.fail_on != "never"
    if options.quiet and not guard.config.report_path and not failing:
        return status  # nothing asked for a report: spare the host psutil's import
    try:
        report = guard.report(process_figures=not options.quiet or bool(guard.config.report_path))
    except Exception as exc:
        internal_error("making the report at exit", exc)
        return status
    path = _exit.report_path(guard.config.report_path)
    if path:
        try:
            written = report.write_json(path)
            if not options.quiet:
                say(f"report written to {written}")
        except Exception as exc:
            say(f"could not write the report to {guard.config.report_path!r}: {exc}")
    if not options.quiet:
        try:
            sys.stderr.write(report.to_text())
            sys.stderr.flush()
        except Exception as exc:
            internal_error("printing the summary", exc)
    if status == 0 and options.fail_on != "never" and report.flagged(options.fail_on):
        return EXIT_FINDINGS
    return status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m executor_guard`` and ``executor-guard``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["report"]:
        return _report_command(arguments[1:])
    parser = _run_parser()
    options = parser.parse_args(arguments)
    if options.target is None:
        parser.error("the following arguments are required: SCRIPT|MODULE")
    try:
        guard = _install(options)
    except ConfigError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return EXIT_USAGE

    pending: Optional[BaseException] = None
    status = 0
    try:
        if options.module:
            _run_module(options.target, list(options.args))
        else:
            if not os.path.exists(options.target):
                sys.stderr.write(
                    f"{sys.executable}: can't open file {options.target!r}: "
                    f"[Errno 2] No such file or directory\n"
                )
                return EXIT_USAGE
            _run_script(options.target, list(options.args))
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt as exc:
        pending = exc
        status = 130
    except BaseException as exc:
        tb = _strip_launcher_frames(exc.__traceback__)
        try:
            sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        except Exception:
            pass
        status = 1
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
    status = _finish(guard, options, status)
    if pending is not None:
        # Let the interpreter end the way it ends on an uncaught Ctrl-C.
        raise pending.with_traceback(_strip_launcher_frames(pending.__traceback__))
    return status
