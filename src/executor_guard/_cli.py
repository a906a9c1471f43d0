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
FAIL_ON = _config.FAIL_ON


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


_EXIT_STATUSES = f"""\
exit status:
  the program's own status, or
  {EXIT_USAGE}  bad options, a report path that cannot be written, unreadable input
  {EXIT_FINDINGS}  the program exited 0 but --fail-on found findings (one line says which)"""


def _environment_help() -> str:
    """The variables, from the option table: each option's, then the switches of its own."""
    rows = [
        (option.env, _variable_meaning(option))
        for option in _config.OPTIONS
        if option.env is not None
    ]
    rows.append((_config.STRICT_ENV, "1: a bad variable stops the process (status 2)"))
    rows.append(
        (_config.CONFIG_ENV, "a TOML file whose [tool.executor_guard] table the hook reads")
    )
    width = max(len(name) for name, _ in rows)
    lines = ["environment (any Python process, no launcher needed; EXECUTOR_GUARD=1 is log):"]
    lines += [f"  {name:<{width}}  {meaning}" for name, meaning in rows]
    return "\n".join(lines)


def _variable_meaning(option: _config.Option) -> str:
    if option.flag is None:
        return f"1: {option.help}"
    if not option.exported:
        return f"{option.flag} (this launcher only; not passed to its children)"
    return option.flag


def _run_epilog() -> str:
    return f"""\
examples:
  {PROG} app.py --port 8000          run app.py, print the churning call sites at exit
  {PROG} --fail-on churn -m pytest   fail CI (status 3) when a call site churns
  {PROG} --report guard.json -m mysvc.worker
  {PROG} report --format html -o guard.html guard.json

{_environment_help()}

{_EXIT_STATUSES}

Options may also come from [tool.executor_guard] in the nearest pyproject.toml
(command line > environment > pyproject.toml > defaults)."""


class _Version(argparse.Action):
    """``--version``: the version, the implementation, and where the start-up hook is."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, nargs=0, help="show the version and the start-up hook"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        parser.exit(0, version_text() + "\n")


def version_text() -> str:
    """What ``--version`` prints: which code runs, and whether ``EXECUTOR_GUARD`` can reach it."""
    import platform

    from . import _startup

    hook = _startup.hook_file()
    python = f"{platform.python_implementation()} {platform.python_version()}"
    lines = [
        f"executor_guard {__version__} ({os.path.dirname(os.path.abspath(__file__))})",
        f"implementation: pure-Python hooks on {python} ({sys.executable})",
    ]
    if hook is None:
        lines.append(
            "start-up hook: not installed in this environment "
            "(EXECUTOR_GUARD has no effect here; use the launcher or install())"
        )
    else:
        lines.append(f"start-up hook: {hook} (runs when EXECUTOR_GUARD is set)")
    return "\n".join(lines)


def _run_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_run_epilog(),
        # The target and its arguments are split off first (see _split): an
        # abbreviation of ours must not swallow the program's own options.
        allow_abbrev=False,
        usage=(
            f"{PROG} [OPTIONS] SCRIPT [ARGS...]\n"
            f"       {PROG} [OPTIONS] -m MODULE [ARGS...]\n"
            f"       {PROG} report [OPTIONS] REPORT.json [REPORT.json ...]"
        ),
        description=(
            "Run a Python program with executor_guard watching every concurrent.futures "
            "pool it creates; print the call sites that create pools repeatedly."
        ),
    )
    parser.add_argument("--version", action=_Version)
    add_options(parser, _config.OPTIONS)
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"""\
examples:
  {PROG} report guard.json                        the summary, as at exit
  {PROG} report --fail-on churn guard-*.json      CI gate: status 3 on churn
  {PROG} report --format html -o guard.html guard-*.json
  {PROG} report --write-baseline baseline.json guard.json
  {PROG} report --diff --fail-on churn before.json after.json

Several reports (one per process) merge by call site.

exit status:
  0  rendered; no findings at the --fail-on level (or AFTER is not worse)
  {EXIT_USAGE}  bad options, or a file that is not a report (one line names the file and field)
  {EXIT_FINDINGS}  findings at the --fail-on level (one line says which sites)""",
        description=(
            "Render one or more JSON reports (merged by call site); gate CI on them "
            "(--fail-on, --baseline), write a baseline, or compare two reports (--diff)."
        ),
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "markdown", "html"),
        default="text",
        help="text (default), json (one merged report), markdown (for a CI summary), html (a page)",
    )
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--limit", type=_typed(_count), metavar="N", help="show N sites with findings (10)"
    )
    limits.add_argument("--all", action="store_true", help="show every site with findings")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    for name in ("fail_on", "baseline"):
        add_options(parser, [_config.BY_NAME[name]])
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--write-baseline", metavar="FILE", help="write the reports' call sites as a baseline"
    )
    action.add_argument(
        "--diff",
        action="store_true",
        help="compare two reports, BEFORE AFTER: sites gone, new, better and worse",
    )
    parser.add_argument("files", nargs="+", metavar="REPORT.json", help="JSON reports to read")
    return parser


def _count(value: object, source: str) -> int:
    if isinstance(value, str) and value.strip().isdigit() and value.isascii():
        return int(value)
    raise ConfigError(source, value, "expected a number of sites: 0 or more")


def _report_command(argv: Sequence[str]) -> int:
    from ._report import ReportFileError, load_all

    parser = _report_parser()
    options = parser.parse_args(list(argv))
    error_prefix = f"{PROG} report: error:"
    from ._pyproject import resolve

    try:
        config, _ = resolve(
            os.environ,
            options_given(options, [_config.BY_NAME["fail_on"], _config.BY_NAME["baseline"]]),
            names=("fail_on", "baseline"),
        )
    except ConfigError as error:
        sys.stderr.write(f"{error_prefix} {error}\n")
        return EXIT_USAGE
    limit = None if options.all else (options.limit if options.limit is not None else 10)
    try:
        if options.diff:
            if options.format == "html":
                parser.error("--diff writes text, json or markdown, not html")
            if len(options.files) != 2:
                parser.error(f"--diff takes two reports, BEFORE AFTER (got {len(options.files)})")
            return _diff(options, config.fail_on, limit)
        report = load_all(options.files)
        if options.write_baseline:
            return _write_baseline(report, options.write_baseline)
        if config.baseline is not None:
            from ._baseline import cached

            try:
                report = cached(config.baseline).annotate(report)
            except ReportFileError as error:
                sys.stderr.write(f"{error_prefix} cannot read the baseline {error}\n")
                return EXIT_USAGE
    except ReportFileError as error:
        sys.stderr.write(f"{error_prefix} {error}\n")
        return EXIT_USAGE
    if options.format == "json":
        text = report.to_json()
    elif options.format == "markdown":
        text = report.to_markdown(limit=limit)
    elif options.format == "html":
        text = report.to_html()
    else:
        text = report.to_text(limit=limit)
    if not _output(text, options.output, error_prefix):
        return EXIT_USAGE
    if config.fail_on != "never":
        verdict = fail_on_line(report, config.fail_on)
        if verdict is not None:
            sys.stderr.write(f"executor_guard: {verdict}\n")
            return EXIT_FINDINGS
    return 0


def _output(text: str, path: Optional[str], error_prefix: str) -> bool:
    """Write ``text`` to ``path`` (stdout when None); False, with one line, if it cannot."""
    if path is None or path == "-":
        sys.stdout.write(text)
        return True
    from ._report import write_atomically

    try:
        write_atomically(path, text)
    except OSError as error:
        sys.stderr.write(f"{error_prefix} -o: cannot write {path!r} ({error.strerror})\n")
        return False
    return True


def _write_baseline(report: Any, path: str) -> int:
    from . import _baseline

    try:
        data = _baseline.write(report, path)
    except OSError as error:
        sys.stderr.write(
            f"{PROG} report: error: --write-baseline: cannot write {path!r} ({error.strerror})\n"
        )
        return EXIT_USAGE
    sites = data["sites"]
    with_findings = sum(1 for entry in sites if entry["findings"])
    noun = "call site" if len(sites) == 1 else "call sites"
    sys.stdout.write(
        f"executor_guard: baseline written to {path}: {len(sites)} {noun}, "
        f"{with_findings} with findings\n"
    )
    return 0


def _diff(options: argparse.Namespace, fail_on: str, limit: Optional[int]) -> int:
    import json

    from . import _baseline
    from ._report import load

    before_path, after_path = options.files
    before, after = load(before_path), load(after_path)
    root = _baseline.project_root(os.getcwd())
    data = _baseline.diff_report(before, after, options.files, root)
    if options.format == "json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = render_diff(data, markdown=options.format == "markdown", limit=limit)
    if not _output(text, options.output, f"{PROG} report: error:"):
        return EXIT_USAGE
    if fail_on != "never" and data["worse_at"][fail_on]:
        worse = [s["site"] for s in data["worse"] if fail_on == "any" or "churn" in s["gained"]]
        new = [
            s["site"]
            for s in data["new"]
            if (s["findings"] if fail_on == "any" else "churn" in s["findings"])
        ]
        sys.stderr.write(
            f"executor_guard: exit status {EXIT_FINDINGS}: {after_path} is worse than "
            f"{before_path} (--fail-on {fail_on}): "
            + ", ".join([*(f"new {n}" for n in new), *(f"worse {w}" for w in worse)])
            + "\n"
        )
        return EXIT_FINDINGS
    return 0


def render_diff(
    data: dict[str, Any], *, markdown: bool = False, limit: Optional[int] = None
) -> str:
    """The text (or Markdown) of a ``--diff`` document."""
    from ._report import plural

    def side(name: str) -> str:
        figures = data[name]
        return (
            f"{figures['file']} ({plural(figures['pools'], 'pool')}, "
            f"{plural(figures['sites'], 'call site')}, "
            f"{figures['sites_with_findings']} with findings, peak live {figures['peak_live']})"
        )

    def findings(names: list[str]) -> str:
        return ", ".join(names) or "no findings"

    out = [("### " if markdown else "") + "executor_guard diff"]
    out.append(("- " if markdown else "") + f"before: {side('before')}")
    out.append(("- " if markdown else "") + f"after:  {side('after')}")
    bullet = "- " if markdown else "    "
    kinds = ("gone", "new", "worse", "better", "unchanged")
    for kind in kinds:
        entries = data[kind]
        if not entries:
            continue
        out.append("")
        title = f"{kind} ({len(entries)})"
        out.append(f"**{title}**" if markdown else title)
        shown = entries if limit is None else entries[:limit]
        for entry in shown:
            where = f"`{entry['site']}`" if markdown else entry["site"]
            if kind in ("gone", "new"):
                out.append(
                    f"{bullet}[{findings(entry['findings'])}] {where}: created {entry['created']}, "
                    f"peak live {entry['peak_live']}"
                )
                continue
            before = entry["before"]
            change = ""
            if entry["gained"]:
                change += f"; new: {', '.join(entry['gained'])}"
            if entry["lost"]:
                change += f"; gone: {', '.join(entry['lost'])}"
            out.append(
                f"{bullet}[{findings(entry['findings'])}] {where}: created {before['created']} -> "
                f"{entry['created']}, peak live {before['peak_live']} -> {entry['peak_live']}"
                f"{change}"
            )
        if len(shown) < len(entries):
            out.append(f"{bullet}... and {len(entries) - len(shown)} more")
    worse = data["worse_at"]
    verdict = (
        "worse: new churn" if worse["churn"] else "worse: new findings" if worse["any"] else None
    )
    if verdict is None:
        before_flagged = data["before"]["sites_with_findings"]
        after_flagged = data["after"]["sites_with_findings"]
        verdict = "better" if after_flagged < before_flagged or data["better"] else "no worse"
        if not any(data[k] for k in ("gone", "new", "better")) and not data["unchanged"]:
            verdict = "no call sites on either side"
    out.append("")
    counts = ", ".join(f"{kind} {len(data[kind])}" for kind in kinds)
    out.append(
        f"**verdict: {verdict}** ({counts})" if markdown else f"verdict: {verdict} ({counts})"
    )
    return "\n".join(out) + "\n"


# -- the command line's shape -------------------------------------------------


def _takes_value() -> frozenset[str]:
    """The launcher's flags that take a value as the next argument."""
    flags = set()
    for option in _config.OPTIONS:
        if option.flag is not None and option.flag_arguments()["action"] != "store_true":
            flags.add(option.flag)
    return frozenset(flags)


def _split(arguments: list[str]) -> tuple[list[str], bool, Optional[str], list[str]]:
    """``(our options, is a module, target, its arguments)``, as ``python`` splits them.

    Our options end at the script or at ``-m MODULE`` (also spelled
    ``-mMODULE``): everything after belongs to the program, even what looks
    like one of our flags.
    """
    takes_value = _takes_value()
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument == "--":
            rest = arguments[index + 1 :]
            return arguments[:index], False, (rest[0] if rest else None), rest[1:]
        if argument == "-m":
            if index + 1 >= len(arguments):
                raise _Usage("argument -m: expected one argument")
            return arguments[:index], True, arguments[index + 1], arguments[index + 2 :]
        cluster = _short_cluster(argument)
        if cluster is not None:  # -qm MODULE, -qmMODULE: as python reads -qm
            flags, module = cluster
            head = [*arguments[:index], *flags]
            if module:
                return head, True, module, arguments[index + 1 :]
            if index + 1 >= len(arguments):
                raise _Usage("argument -m: expected one argument")
            return head, True, arguments[index + 1], arguments[index + 2 :]
        if argument.startswith("-") and argument != "-":
            index += 2 if argument in takes_value else 1
            continue
        return arguments[:index], False, argument, arguments[index + 1 :]
    return arguments, False, None, []


def _short_cluster(argument: str) -> Optional[tuple[list[str], str]]:
    """``(our switches, module)`` for ``-mMODULE`` or a cluster such as ``-qm``, else None."""
    if not argument.startswith("-") or argument.startswith("--"):
        return None
    letters = argument[1:]
    position = letters.find("m")
    if position < 0 or any(letter not in "qh" for letter in letters[:position]):
        return None
    return [f"-{letter}" for letter in letters[:position]], letters[position + 1 :]


class _Usage(Exception):
    """A command line that cannot be split; argparse's one-line usage error follows."""


# -- running the target -----------------------------------------------------


class _NotStarted(Exception):
    """The program cannot start; ``status`` and ``line`` are what ``python`` would give."""

    def __init__(self, status: int, line: str) -> None:
        super().__init__(line)
        self.status = status
        self.line = line


def _script_code(path: str, absolute: str) -> types.CodeType:
    """Compile the script as ``python`` would, raising ``_NotStarted`` with its message."""
    import io
    import tokenize

    try:
        with open(absolute, "rb") as stream:
            source = stream.read()
    except OSError as error:
        raise _NotStarted(
            2,
            f"{sys.executable}: can't open file {absolute!r}: [Errno {error.errno}] "
            f"{error.strerror}",
        ) from None
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
        text = source.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        raise _NotStarted(1, _encoding_error(source, absolute)) from None
    return compile(text, absolute, "exec", dont_inherit=True)


def _encoding_error(source: bytes, path: str) -> str:
    """The interpreter's line for a script that is not UTF-8 and declares nothing else."""
    try:
        source.decode("utf-8")
        offset = 0
    except UnicodeDecodeError as error:
        offset = error.start
    line = source.count(b"\n", 0, offset) + 1
    byte = source[offset : offset + 1] or b"\0"
    url = (
        "https://peps.python.org/pep-0263/"
        if sys.version_info >= (3, 11)
        else "https://python.org/dev/peps/pep-0263/"
    )
    return (
        f"SyntaxError: Non-UTF-8 code starting with '\\x{byte[0]:02x}' in file {path} on "
        f"line {line}, but no encoding declared; see {url} for details"
    )


def _absolute(path: str) -> str:
    # Like the interpreter: the path joined to the working directory, unnormalised.
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _prepare_script(path: str) -> Any:
    """What runs ``path`` as ``python path`` would, checked before anything runs.

    Raises ``_NotStarted`` for what ``python`` refuses before running a line:
    a missing file, a directory or zip file without ``__main__``, a script
    that does not decode or does not compile (its traceback is printed here).
    """
    if path == "-":
        return _run_stdin
    absolute = _absolute(path)
    if not os.path.exists(absolute):
        raise _NotStarted(
            2,
            f"{sys.executable}: can't open file {absolute!r}: [Errno 2] No such file or directory",
        )
    if os.path.isdir(absolute) or (not absolute.endswith((".py", ".pyw")) and _is_zip(absolute)):
        if not _has_main(absolute):
            raise _NotStarted(1, f"{sys.executable}: can't find '__main__' module in {absolute!r}")
        return lambda args: _run_path(path, absolute, args)
    if absolute.endswith(".pyc"):  # compiled: runpy reads it as python does
        return lambda args: _run_path(path, absolute, args, path0=os.path.dirname(absolute))
    try:
        code = _script_code(path, absolute)
    except SyntaxError as error:
        import traceback

        sys.stderr.write("".join(traceback.format_exception_only(type(error), error)))
        raise _NotStarted(1, "") from None
    return lambda args: _run_code(path, absolute, code, args)


def _run_stdin(args: list[str]) -> None:
    """Run the program read from standard input, as ``python -`` does."""
    source = sys.stdin.read()
    code = compile(source, "<stdin>", "exec", dont_inherit=True)
    _set_path0("")
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=sys.modules["builtins"], __spec__=None)
    main.__package__ = None
    sys.modules["__main__"] = main
    sys.argv = ["-", *args]
    exec(code, main.__dict__)


def _has_main(path: str) -> bool:
    if os.path.isdir(path):
        return any(
            os.path.isfile(os.path.join(path, name)) for name in ("__main__.py", "__main__.pyc")
        )
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return bool(names & {"__main__.py", "__main__.pyc"})


def _run_path(path: str, absolute: str, args: list[str], path0: Optional[str] = None) -> None:
    """Run a directory or zip file with a ``__main__``, or a ``.pyc``, as ``python`` would."""
    import runpy

    _set_path0(absolute if path0 is None else path0)
    sys.argv = [path, *args]
    runpy.run_path(absolute, run_name="__main__")


def _run_code(path: str, absolute: str, code: types.CodeType, args: list[str]) -> None:
    """Run a compiled script as ``python path args...`` would, in a fresh ``__main__``."""
    import importlib.machinery

    # Like the interpreter: sys.path[0] is the script's real directory.
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


def _find_module(name: str) -> None:
    """Raise ``_NotStarted`` with ``python -m``'s line when ``name`` cannot be run.

    The lookup ``python -m`` does (it imports the parent packages); the run
    that follows finds them imported.
    """
    import runpy

    _set_path0(os.getcwd())
    error = runpy._Error  # type: ignore[attr-defined]
    try:
        runpy._get_module_details(name, error)  # type: ignore[attr-defined]
    except error as exc:
        raise _NotStarted(1, f"{sys.executable}: {exc}") from None


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


def _strip_launcher_frames(
    tb: Optional[types.TracebackType], *, keep_runpy: bool = False
) -> Optional[types.TracebackType]:
    """Drop the traceback entries before the program's own, so it reads as under ``python``.

    The leading entries are the launcher's: whatever called it (runpy, a
    console script's wrapper), this package, runpy running the target. The
    program's first frame is the first one after ours that is not runpy's;
    with ``keep_runpy`` (``-m``, whose tracebacks under ``python`` show
    runpy running the module) the first one after ours.
    """
    import runpy

    ours = os.path.dirname(os.path.abspath(__file__)) + os.sep
    runpy_file = os.path.abspath(runpy.__file__)
    start = tb
    seen_ours = False
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        is_ours = os.path.abspath(name).startswith(ours)
        is_runpy = name.startswith("<frozen runpy") or os.path.abspath(name) == runpy_file
        if is_ours:
            seen_ours = True
        elif seen_ours and (keep_runpy or not is_runpy):
            return tb
        tb = tb.tb_next
    return start if not seen_ours else None


def _exit_status(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        # CPython exits with -1 (255) for a status that does not fit a C long.
        return code & 0xFF if -(2**63) <= code < 2**63 else 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:
        pass
    return 1


def _print_tracebacks_from_the_program(keep_runpy: bool) -> None:
    """Have the interpreter's report of an uncaught exception start in the program."""
    previous = sys.excepthook

    def excepthook(kind: Any, value: BaseException, tb: Optional[types.TracebackType]) -> None:
        tb = _strip_launcher_frames(tb, keep_runpy=keep_runpy)
        previous(kind, value.with_traceback(tb), tb)

    sys.excepthook = excepthook


# -- the guard around the run -------------------------------------------------


class _Run:
    """One launch: the guard, where reports go, and the spool children report into."""

    def __init__(self, options: argparse.Namespace) -> None:
        from . import _exit
        from ._guard import install_config
        from ._pyproject import origin, resolve

        self.options = options
        given = options_given(options, _config.OPTIONS)
        config, settings = resolve(os.environ, given)
        # Children get the variable too: a bad one would leave every child unguarded.
        _config.strict_from_environ(os.environ)
        #: The baseline applied to the summary, the report and --fail-on.
        self.baseline: Optional[Any] = None
        if config.baseline is not None:
            from ._baseline import cached
            from ._report import ReportFileError

            source = origin("baseline", os.environ, given, settings)
            try:
                self.baseline = cached(config.baseline)
            except ReportFileError as error:
                raise _NotStarted(
                    EXIT_USAGE, f"{PROG}: error: {source}: cannot read the baseline {error}"
                ) from None
            # Children that change directory still find it.
            config = config.replace(baseline=os.path.abspath(config.baseline))
        if config.report_path is not None:
            reason = _exit.check_report_path(config.report_path)
            if reason is not None:
                source = "--report" if "report_path" in given else _config.ENV["report_path"]
                raise _NotStarted(
                    EXIT_USAGE,
                    f"{PROG}: error: {source}: cannot write a report to "
                    f"{config.report_path!r} ({reason})",
                )
            config = config.replace(report_path=_exit.resolve_report_path(config.report_path))
        if config.dump_signal == "SIGTERM":
            source = "--dump-signal" if "dump_signal" in given else _config.ENV["dump_signal"]
            raise _NotStarted(
                EXIT_USAGE,
                f"{PROG}: error: {source}: SIGTERM ends the program under the launcher, which "
                "writes the report then; choose another signal (USR1, USR2)",
            )
        import tempfile

        #: A spool of an enclosing launcher: our merged report goes there too.
        self.outer_spool = os.environ.get(_exit.SPOOL_ENV) or None
        self.spool = tempfile.mkdtemp(prefix="executor_guard-spool-")
        # Children (subprocesses, spawn workers) read the same settings at start-up.
        exported = _config.to_environ(config)
        if config.report_path is not None and "{pid}" not in config.report_path:
            # The path is the whole tree's, which we write: children report to the spool.
            exported.pop(_config.ENV["report_path"], None)
            os.environ.pop(_config.ENV["report_path"], None)
        exported[_exit.SPOOL_ENV] = self.spool
        # The variables now carry everything the file said: a child must not
        # read the file again under them (an option set back to its default
        # here would take the file's value there).
        os.environ.pop(_config.CONFIG_ENV, None)
        for option in _config.OPTIONS:
            if option.env is not None and not option.exported:
                os.environ.pop(option.env, None)  # this launcher's alone (see the table)
        os.environ.update(exported)
        self.guard = install_config(config)
        # The launcher writes report and summary: an at-exit writer armed in this
        # process (the start-up hook stays out of it where it can tell) stands down.
        _exit.report_at_exit()
        _exit.take_over(self.finish)
        if config.report_path is not None:
            _exit.claim_report_path(force=True)
        if config.dump_signal is not None:
            _exit.dump_on_signal(config.dump_signal)
        _exit.report_on_sigterm()

    def discard(self) -> None:
        """The program never started: no summary, no report; the spool goes."""
        import shutil

        from . import _exit

        _exit.take_over(None)
        shutil.rmtree(self.spool, ignore_errors=True)

    def finish(self, status: int) -> int:
        """Print the summary and write the report of the whole tree; map --fail-on."""
        import shutil

        from . import _exit
        from ._diagnostics import internal_error

        try:
            return self._finish(status)
        except KeyboardInterrupt:  # Ctrl-C while reporting: the program's status stands
            _exit.write_stderr("executor_guard: interrupted while making the report\n")
            return status
        except Exception as exc:
            internal_error("making the report at exit", exc)
            return status
        finally:
            shutil.rmtree(self.spool, ignore_errors=True)

    def _finish(self, status: int) -> int:
        from . import _exit
        from ._report import ReportFileError, load, merge

        options, guard = self.options, self.guard
        fail_on = guard.config.fail_on if status & 0xFF == 0 else "never"

        def say(message: str) -> None:
            _exit.write_stderr(f"executor_guard: {message}\n")

        children = _exit.spooled(self.spool)
        path = guard.config.report_path
        if options.quiet and not path and fail_on == "never" and not self.outer_spool:
            return status  # nothing asked for a report: spare the host psutil's import
        own = guard.report(process_figures=not options.quiet or bool(path))
        reports = [own]
        for child in children:
            try:
                reports.append(load(child))
            except ReportFileError as error:
                say(f"a child process's report was left out: {error}")
        tree = merge(reports)
        if self.baseline is not None:
            tree = self.baseline.annotate(tree)
        if path:
            whole = "{pid}" not in path
            written = _exit.write_report(tree if whole else own, path)
            if written and not options.quiet:
                say(f"report written to {written}")
        if self.outer_spool:
            _exit.spool_report(tree, self.outer_spool)
        if not options.quiet:
            try:
                _exit.write_stderr(tree.to_text())
            except Exception:
                pass
        if fail_on != "never":
            verdict = fail_on_line(tree, fail_on)
            if verdict is not None:
                say(verdict)
                return EXIT_FINDINGS
        return status


def fail_on_line(report: Any, level: str) -> Optional[str]:
    """The one line that explains exit status 3, or None when ``report`` passes ``level``."""
    from ._report import group_location, short_path

    flagged = report.flagged(level)
    # A library line churning for several call sites together is churn too.
    groups = report.flagged_groups()
    if not flagged and not groups:
        return None
    parts = []
    if flagged:
        noun = "call site" if len(flagged) == 1 else "call sites"
        names = [f"{short_path(s['file'])}:{s['line']} in {s['function']}" for s in flagged[:5]]
        more = f" and {len(flagged) - 5} more" if len(flagged) > 5 else ""
        label = f"{len(flagged)} {noun} with {'churn' if level == 'churn' else 'findings'}"
        parts.append((label, ", ".join(names) + more))
    if groups:
        noun = "library line" if len(groups) == 1 else "library lines"
        names = [
            f"{group_location(g)} ({g['created']} pools from {len(g['sites'])} call sites)"
            for g in groups[:5]
        ]
        more = f" and {len(groups) - 5} more" if len(groups) > 5 else ""
        parts.append((f"{len(groups)} {noun} churning across call sites", ", ".join(names) + more))
    (label, names_text), *rest = parts
    tail = "".join(f"; {other}: {text}" for other, text in rest)
    return f"exit status {EXIT_FINDINGS}: {label} (--fail-on {level}): {names_text}{tail}"


def _refuse(refused: _NotStarted) -> int:
    if refused.line:
        sys.stderr.write(refused.line + "\n")
    return refused.status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m executor_guard`` and ``executor-guard``."""
    from . import _exit

    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["report"]:
        return _report_command(arguments[1:])
    parser = _run_parser()
    try:
        ours, is_module, target, args = _split(arguments)
    except _Usage as error:
        parser.error(str(error))
    options = parser.parse_args(ours)
    if target is None:
        parser.error("the following arguments are required: SCRIPT|MODULE")
    try:
        runner = None if is_module else _prepare_script(target)
        run = _Run(options)
    except ConfigError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return EXIT_USAGE
    except _NotStarted as refused:
        return _refuse(refused)

    pending: Optional[BaseException] = None
    status = 0
    try:
        if runner is None:
            # Finding the module imports its packages: the program has started.
            _find_module(target)
            _run_module(target, args)
        else:
            runner(args)
    except _NotStarted as refused:
        run.discard()
        return _refuse(refused)
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt as exc:
        pending = exc
        status = 130
    except BaseException as exc:
        tb = _strip_launcher_frames(exc.__traceback__, keep_runpy=is_module)
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
    # A child forked by the program that came back here ends as a child: the
    # launcher's ending is its own process's only (finish knows by the pid).
    status = _exit.finish(status)
    if pending is not None:
        # End the way the interpreter ends on an uncaught Ctrl-C, traceback included.
        _print_tracebacks_from_the_program(is_module)
        raise pending
    return status
