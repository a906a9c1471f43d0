"""One frozen configuration object, and the one table of options that defines it.

:data:`OPTIONS` has a row per option: its API keyword (also its key under
``[tool.executor_guard]``), environment variable, command-line flag, parser,
default and help. :class:`Config`, :func:`from_options`, :func:`from_environ`,
:func:`to_environ`, the launcher's flags and the pytest plugin's options are
all read off that table, so an option is added by adding a row.

Every parser takes the value as given and the name of its source, so an error
names exactly what to fix: ``EXECUTOR_GUARD_THRESHOLD: invalid value 'ten'
(expected an integer from 2 to 1000000000)``.

Precedence, lowest first: defaults, the ``[tool.executor_guard]`` table of
``pyproject.toml`` (``_pyproject``), environment, explicit options (keywords
or command line). The environment is read only by :func:`from_environ` (and
the pytest plugin, through the same rows); a variable that is unset or blank
leaves its option as it is. Boolean variables all take ``0/1``, ``true/false``,
``yes/no`` or ``on/off`` in any case (:func:`parse_bool`).

This module is imported at interpreter start when ``EXECUTOR_GUARD`` is set:
it imports nothing beyond ``math`` and our exceptions.
"""

from __future__ import annotations

import math

from .exceptions import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, Optional

    Parser = Callable[[Any, str], Any]

MODES = ("warn", "log", "raise")
LOG_FORMATS = ("console", "json")
LOG_TARGETS = ("stderr", "logging")
METRICS = ("otel",)
FAIL_ON = ("never", "churn", "any")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")

STRICT_ENV = "EXECUTOR_GUARD_STRICT"
#: A TOML file whose ``[tool.executor_guard]`` table the start-up hook reads
#: (the launcher, ``report`` and the plugin read it instead of searching).
CONFIG_ENV = "EXECUTOR_GUARD_CONFIG"

MAX_THRESHOLD = 10**9
MAX_STACK_DEPTH = 256
MAX_WINDOW = 10.0**9


# -- parsers: (value, source) -> value, raising ConfigError naming the source --


def parse_mode(value: object, source: str) -> str:
    """``warn``, ``log`` or ``raise`` (case-insensitive)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in MODES:
            return text
    raise ConfigError(source, value, "expected one of: " + ", ".join(MODES))


def parse_mode_variable(value: object, source: str) -> str:
    """``EXECUTOR_GUARD``'s spelling: a mode, or a switch whose on spellings mean ``log``.

    The switch's off spellings (``0``/``false``/``no``/``off``) never get here:
    they are the option's ``unset`` texts, the guard staying off. Every switch
    the package reads takes the same spellings (:data:`TRUE`, :data:`FALSE`).
    """
    if isinstance(value, str) and value.strip().lower() in TRUE:
        return "log"
    if isinstance(value, str) and value.strip().lower() in MODES:
        return value.strip().lower()
    raise ConfigError(
        source,
        value,
        "expected one of: " + ", ".join(MODES) + ", or 1/true/yes/on (log), 0/false/no/off",
    )


def parse_threshold(value: object, source: str) -> int:
    """An integer >= 2: one pool at a site is never churn."""
    number = _parse_int(value)
    if number is None or not 2 <= number <= MAX_THRESHOLD:
        raise ConfigError(source, value, f"expected an integer from 2 to {MAX_THRESHOLD}")
    return number


def parse_stack_depth(value: object, source: str) -> int:
    """An integer from 0 (no stacks) to MAX_STACK_DEPTH."""
    number = _parse_int(value)
    if number is None or not 0 <= number <= MAX_STACK_DEPTH:
        raise ConfigError(source, value, f"expected an integer from 0 to {MAX_STACK_DEPTH}")
    return number


def parse_window(value: object, source: str) -> Optional[float]:
    """Seconds > 0, or None / ``""`` / ``none`` for the process lifetime."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "off"):
            return None
        try:
            number = float(text)
        except ValueError:
            number = math.nan
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        number = math.nan
    if not (math.isfinite(number) and 0 < number <= MAX_WINDOW):
        raise ConfigError(source, value, "expected a number of seconds > 0, or none")
    return number


def parse_ignore(value: object, source: str) -> tuple[str, ...]:
    """Shell globs: a comma-separated string, or an iterable of strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[object] = value.split(",")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        raise ConfigError(source, value, "expected glob patterns")
    patterns = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(source, value, "expected glob patterns (strings)")
        item = item.strip()
        if item:
            patterns.append(item)
    return tuple(patterns)


def parse_report_path(value: object, source: str) -> Optional[str]:
    """A file path; ``{pid}`` expands when the report is written."""
    if value is None:
        return None
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        text = value if isinstance(value, str) else str(value.__fspath__())
        if not text.strip():
            return None
        if "\0" in text:
            raise ConfigError(source, value, "expected a file path")
        try:
            text.format(pid=0)
        except (IndexError, KeyError, ValueError):
            raise ConfigError(
                source, value, "expected a file path; only {pid} may appear in braces"
            ) from None
        return text
    raise ConfigError(source, value, "expected a file path")


def parse_baseline(value: object, source: str) -> Optional[str]:
    """A baseline file's path (a report or one written by ``report --write-baseline``)."""
    if value is None:
        return None
    if isinstance(value, str) or hasattr(value, "__fspath__"):
        text = value if isinstance(value, str) else str(value.__fspath__())
        if not text.strip():
            return None
        if "\0" not in text:
            return text
    raise ConfigError(source, value, "expected a file path")


def parse_fail_on(value: object, source: str) -> str:
    """``never``, ``churn`` or ``any``: the findings that turn exit status 0 into 3."""
    return parse_choice(value, source, FAIL_ON)


def parse_choice(value: object, source: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive)."""
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ConfigError(source, value, "expected one of: " + ", ".join(choices))


def parse_log_format(value: object, source: str) -> str:
    """``console`` or ``json``."""
    return parse_choice(value, source, LOG_FORMATS)


def parse_metrics(value: object, source: str) -> Optional[str]:
    """``otel`` (OpenTelemetry instruments), or None for no metrics."""
    if value is None:
        return None
    return parse_choice(value, source, METRICS)


def parse_log_target(value: object, source: str) -> str:
    """``stderr`` or ``logging`` (the stdlib logger ``executor_guard``)."""
    return parse_choice(value, source, LOG_TARGETS)


def parse_signal(value: object, source: str) -> Optional[str]:
    """A signal name (``USR1``, ``SIGUSR1``) that exists on this platform, or None."""
    if value is None:
        return None
    import signal

    if isinstance(value, str):
        text = value.strip().upper()
        if not text:
            return None
        name = text if text.startswith("SIG") else "SIG" + text
        if name not in ("SIGKILL", "SIGSTOP") and isinstance(
            getattr(signal, name, None), signal.Signals
        ):
            return name
    raise ConfigError(source, value, "expected a signal name such as USR1")


def parse_bool(value: object, source: str) -> bool:
    """A switch: True or False, or one of ``0/1 true/false yes/no on/off`` in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
    raise ConfigError(source, value, "expected 0/1, true/false, yes/no or on/off")


def _parse_int(value: object) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        # ASCII only: "¹".isdigit() is true, yet int("¹") raises.
        if digits.isascii() and digits.isdigit() and len(text) <= 20:
            return int(text)
    return None


# -- the table ------------------------------------------------------------------


class Option:
    """One row of :data:`OPTIONS`: an option in each of its spellings.

    ``name`` is the API keyword, the :class:`Config` field and the key under
    ``[tool.executor_guard]`` (``pyproject``). ``env`` and ``flag`` are None
    where the option has no such spelling. ``parse`` validates a value from
    any source; ``env_parse`` replaces it for the variable's text where that
    is spelled differently, and ``unset`` lists the texts that leave the
    option as it is. ``repeatable`` options take the flag more than once and
    a comma-separated variable. ``reported`` options appear in the JSON
    report's ``config`` block; ``per_test`` ones are offered by the pytest
    plugin for each test.
    """

    __slots__ = (
        "default",
        "env",
        "env_parse",
        "exported",
        "flag",
        "help",
        "metavar",
        "name",
        "parse",
        "per_test",
        "pyproject",
        "repeatable",
        "reported",
        "unset",
    )

    def __init__(
        self,
        name: str,
        *,
        env: Optional[str],
        flag: Optional[str],
        metavar: Optional[str] = None,
        parse: Parser,
        default: Any,
        help: str,
        env_parse: Optional[Parser] = None,
        unset: tuple[str, ...] = ("",),
        repeatable: bool = False,
        reported: bool = False,
        per_test: bool = False,
        exported: bool = True,
    ) -> None:
        self.name = name
        self.pyproject = name
        self.env = env
        self.flag = flag
        self.metavar = metavar
        self.parse = parse
        self.default = default
        self.help = help
        self.env_parse = env_parse if env_parse is not None else parse
        self.unset = unset
        self.repeatable = repeatable
        self.reported = reported
        self.per_test = per_test
        self.exported = exported

    def flag_arguments(self) -> dict[str, Any]:
        """How a command line takes this option (argparse's and pytest's ``add*`` keywords).

        A switch is a bare flag; a repeatable option collects its values;
        anything else takes one value. Nothing is parsed here: each caller
        parses with :attr:`parse` in its own way.
        """
        if self.parse is parse_bool:
            return {"action": "store_true", "default": None, "help": self.help}
        return {
            "action": "append" if self.repeatable else "store",
            "default": None,
            "metavar": self.metavar or self.name.upper(),
            "help": self.help,
        }

    def __repr__(self) -> str:
        return f"<Option {self.name}>"


OPTIONS = (
    Option(
        "mode",
        env="EXECUTOR_GUARD",
        flag="--mode",
        metavar="{warn,log,raise}",
        parse=parse_mode,
        env_parse=parse_mode_variable,
        unset=("", *FALSE),
        default="warn",
        help="warn (default), log or raise when a call site crosses the threshold",
        reported=True,
    ),
    Option(
        "threshold",
        env="EXECUTOR_GUARD_THRESHOLD",
        flag="--threshold",
        metavar="N",
        parse=parse_threshold,
        default=10,
        help="pools created at one call site that make it churn (default 10)",
        reported=True,
        per_test=True,
    ),
    Option(
        "window",
        env="EXECUTOR_GUARD_WINDOW",
        flag="--window",
        metavar="SECONDS",
        parse=parse_window,
        default=None,
        help="count creations within this many seconds (default: the whole run)",
        reported=True,
        per_test=True,
    ),
    Option(
        "stack_depth",
        env="EXECUTOR_GUARD_STACK_DEPTH",
        flag="--stack-depth",
        metavar="N",
        parse=parse_stack_depth,
        default=32,
        help="frames kept per creation stack (default 32)",
        reported=True,
        per_test=True,
    ),
    Option(
        "ignore",
        env="EXECUTOR_GUARD_IGNORE",
        flag="--ignore",
        metavar="PATTERN",
        parse=parse_ignore,
        default=(),
        help="glob matched against path:line, path or module.function (repeatable)",
        repeatable=True,
        reported=True,
        per_test=True,
    ),
    Option(
        "app",
        env="EXECUTOR_GUARD_APP",
        flag="--app",
        metavar="PATTERN",
        parse=parse_ignore,
        default=(),
        help=(
            "package name (mysvc, mysvc.*) or path glob that is application code "
            "even where installed (repeatable)"
        ),
        repeatable=True,
        reported=True,
        per_test=True,
    ),
    Option(
        "report_path",
        env="EXECUTOR_GUARD_REPORT",
        flag="--report",
        metavar="PATH",
        parse=parse_report_path,
        default=None,
        help="write the JSON report here at exit; {pid} expands",
    ),
    Option(
        "baseline",
        env="EXECUTOR_GUARD_BASELINE",
        flag="--baseline",
        metavar="FILE",
        parse=parse_baseline,
        default=None,
        help="call sites known from this baseline (or report) neither act nor fail",
        per_test=True,
    ),
    Option(
        "fail_on",
        env="EXECUTOR_GUARD_FAIL_ON",
        flag="--fail-on",
        metavar="{never,churn,any}",
        parse=parse_fail_on,
        default="never",
        help="exit with status 3 when the program exited 0 but findings of this level exist",
        # A launcher started by the program decides its own exit status: an
        # outer --fail-on must not change what the program sees of its children.
        exported=False,
    ),
    Option(
        "log_format",
        env="EXECUTOR_GUARD_LOG_FORMAT",
        flag="--log-format",
        metavar="{console,json}",
        parse=parse_log_format,
        default="console",
        help="console (default) or json, for the log mode",
        per_test=True,
    ),
    Option(
        "log_target",
        env="EXECUTOR_GUARD_LOG_TARGET",
        flag="--log-target",
        metavar="{stderr,logging}",
        parse=parse_log_target,
        default="stderr",
        help="stderr (default) or logging (the stdlib logger 'executor_guard')",
        per_test=True,
    ),
    Option(
        "dump_signal",
        env="EXECUTOR_GUARD_DUMP_SIGNAL",
        flag="--dump-signal",
        metavar="NAME",
        parse=parse_signal,
        default=None,
        help="write the report on this signal (e.g. USR1) without stopping the program",
    ),
    Option(
        "metrics",
        env="EXECUTOR_GUARD_METRICS",
        flag="--metrics",
        metavar="{otel}",
        parse=parse_metrics,
        default=None,
        help="otel: per-site OpenTelemetry instruments, read when the host's SDK collects",
    ),
    Option(
        "sigterm",
        env="EXECUTOR_GUARD_SIGTERM",
        flag=None,
        parse=parse_bool,
        default=False,
        help="on SIGTERM, write the report, then end by SIGTERM (the launcher always does)",
    ),
)

#: The rows by name.
BY_NAME = {option.name: option for option in OPTIONS}

#: The environment variable for each option that has one.
ENV = {option.name: option.env for option in OPTIONS if option.env is not None}

_NAMES = tuple(option.name for option in OPTIONS)


class Config:
    """What the guard does: one field per row of :data:`OPTIONS`, in its order.

    Immutable, and holding already validated values (:func:`from_options`
    validates). A plain slotted class rather than a dataclass: ``dataclasses``
    imports ``inspect``, about 10 ms of interpreter start-up we do not spend.
    The annotations below are for type checkers; a test keeps them in step
    with the table.
    """

    __slots__ = _NAMES

    mode: str
    threshold: int
    window: Optional[float]
    stack_depth: int
    ignore: tuple[str, ...]
    app: tuple[str, ...]
    report_path: Optional[str]
    baseline: Optional[str]
    fail_on: str
    log_format: str
    log_target: str
    dump_signal: Optional[str]
    metrics: Optional[str]
    sigterm: bool

    def __init__(self, **values: Any) -> None:
        for option in OPTIONS:
            value = values.pop(option.name, option.default)
            if option.repeatable:
                value = tuple(value)
            object.__setattr__(self, option.name, value)
        if values:
            raise TypeError(f"Config() got an unexpected keyword argument {next(iter(values))!r}")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable; use replace({name}=...)")

    def options(self) -> dict[str, Any]:
        """The fields as keywords (``Config(**config.options())`` is a copy)."""
        return {name: getattr(self, name) for name in _NAMES}

    def replace(self, **changes: Any) -> Config:
        """Return a copy with ``changes`` applied (already validated values)."""
        options = self.options()
        options.update(changes)
        return Config(**options)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self.options() == other.options()

    def __hash__(self) -> int:
        return hash(tuple(self.options().values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"Config({fields})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's ``config`` block: the ``reported`` options."""
        block: dict[str, Any] = {}
        for option in OPTIONS:
            if option.reported:
                value = getattr(self, option.name)
                block[option.name] = list(value) if option.repeatable else value
        return block


# -- the three ways in ------------------------------------------------------------


def from_options(base: Optional[Config] = None, /, **options: Any) -> Config:
    """Validate API keywords over ``base`` (defaults when None)."""
    config = base if base is not None else Config()
    changes: dict[str, Any] = {}
    for key, value in options.items():
        option = BY_NAME.get(key)
        if option is None:
            known = ", ".join(sorted(BY_NAME))
            raise TypeError(f"unknown executor_guard option {key!r} (known: {known})")
        changes[key] = option.parse(value, f"{key}=")
    return config.replace(**changes) if changes else config


def variable(option: Option, environ: Mapping[str, str]) -> Optional[str]:
    """The text of ``option``'s variable when it asks for something, else None."""
    if option.env is None:
        return None
    raw = environ.get(option.env)
    if raw is None or raw.strip().lower() in option.unset:
        return None
    return raw


def mode_from_environ(environ: Mapping[str, str]) -> Optional[str]:
    """The mode that ``EXECUTOR_GUARD`` asks for, or None when the guard is off."""
    option = BY_NAME["mode"]
    raw = variable(option, environ)
    return None if raw is None else option.env_parse(raw, option.env or "")


def from_environ(
    environ: Mapping[str, str],
    base: Optional[Config] = None,
    *,
    config_file: bool = True,
    names: Optional[Iterable[str]] = None,
) -> Config:
    """Read every ``EXECUTOR_GUARD*`` option over ``base`` (defaults when None).

    With ``config_file`` (the start-up hook's way), the ``[tool.executor_guard]``
    table of the file ``EXECUTOR_GUARD_CONFIG`` names comes first, under the
    variables; the launcher, ``report`` and the plugin read that file
    themselves, in place of the nearest ``pyproject.toml``, and pass False.
    ``names`` limits the rows read (``report`` reads only its own two).
    """
    config = base if base is not None else Config()
    if config_file and (environ.get(CONFIG_ENV) or "").strip():
        from . import _pyproject  # only when asked: tomllib costs start-up time

        config = _pyproject.explicit(environ).apply(config)
    wanted = None if names is None else set(names)
    changes: dict[str, Any] = {}
    for option in OPTIONS:
        if wanted is not None and option.name not in wanted:
            continue
        raw = variable(option, environ)
        if raw is not None:
            changes[option.name] = option.env_parse(raw, option.env or "")
    return config.replace(**changes) if changes else config


def to_environ(config: Config) -> dict[str, str]:
    """The environment variables that reproduce ``config`` in a child process.

    Options without a value (None, no patterns) are left out: a child then
    takes their defaults.
    """
    env: dict[str, str] = {}
    for option in OPTIONS:
        if option.env is None or not option.exported:
            continue
        text = _text(getattr(config, option.name))
        if text:
            env[option.env] = text
    return env


def _text(value: object) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def strict_from_environ(environ: Mapping[str, str]) -> bool:
    """Whether ``EXECUTOR_GUARD_STRICT`` asks bad configuration to stop the process.

    Unset or blank is False; a value :func:`parse_bool` refuses raises
    :class:`~executor_guard.ConfigError` naming the variable.
    """
    raw = environ.get(STRICT_ENV, "")
    return parse_bool(raw, STRICT_ENV) if raw.strip() else False
