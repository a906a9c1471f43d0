"""One frozen configuration object, built from keywords, the environment or the CLI.

Every parser takes the value as given and the name of its source, so an error
names exactly what to fix: ``EXECUTOR_GUARD_THRESHOLD: invalid value 'ten'
(expected an integer >= 2)``.

Precedence, lowest first: defaults, environment, explicit options (keywords or
command line). The environment is read only by :func:`from_environ`, which the
start-up hook, the launcher and the pytest plugin call.
"""

from __future__ import annotations

import math

from .exceptions import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Optional

MODES = ("warn", "log", "raise")
LOG_FORMATS = ("console", "json")
LOG_TARGETS = ("stderr", "logging")

#: The environment variable for each option (the strict switch has no keyword).
ENV = {
    "mode": "EXECUTOR_GUARD",
    "threshold": "EXECUTOR_GUARD_THRESHOLD",
    "window": "EXECUTOR_GUARD_WINDOW",
    "stack_depth": "EXECUTOR_GUARD_STACK_DEPTH",
    "ignore": "EXECUTOR_GUARD_IGNORE",
    "report_path": "EXECUTOR_GUARD_REPORT",
    "log_format": "EXECUTOR_GUARD_LOG_FORMAT",
    "log_target": "EXECUTOR_GUARD_LOG_TARGET",
    "dump_signal": "EXECUTOR_GUARD_DUMP_SIGNAL",
}
STRICT_ENV = "EXECUTOR_GUARD_STRICT"

MAX_THRESHOLD = 10**9
MAX_STACK_DEPTH = 256
MAX_WINDOW = 10.0**9


_FIELDS = (
    "mode",
    "threshold",
    "window",
    "stack_depth",
    "ignore",
    "report_path",
    "log_format",
    "log_target",
    "dump_signal",
)


class Config:
    """What the guard does; see PRODUCT.md's option table for the meaning of each field.

    Immutable. A plain slotted class rather than a dataclass: ``dataclasses``
    imports ``inspect``, about 10 ms of interpreter start-up we do not spend.
    """

    __slots__ = _FIELDS

    mode: str
    threshold: int
    window: Optional[float]
    stack_depth: int
    ignore: tuple[str, ...]
    report_path: Optional[str]
    log_format: str
    log_target: str
    dump_signal: Optional[str]

    def __init__(
        self,
        mode: str = "warn",
        threshold: int = 10,
        window: Optional[float] = None,
        stack_depth: int = 32,
        ignore: tuple[str, ...] = (),
        report_path: Optional[str] = None,
        log_format: str = "console",
        log_target: str = "stderr",
        dump_signal: Optional[str] = None,
    ) -> None:
        values = (
            mode,
            threshold,
            window,
            stack_depth,
            tuple(ignore),
            report_path,
            log_format,
            log_target,
            dump_signal,
        )
        for name, value in zip(_FIELDS, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Config is immutable; use replace({name}=...)")

    def options(self) -> dict[str, Any]:
        """The fields as keywords (``install(**config.options())``)."""
        return {name: getattr(self, name) for name in _FIELDS}

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
        """The JSON report's ``config`` block."""
        return {
            "mode": self.mode,
            "threshold": self.threshold,
            "window": self.window,
            "stack_depth": self.stack_depth,
            "ignore": list(self.ignore),
        }


# -- parsers: (value, source) -> value, raising ConfigError naming the source --


def parse_mode(value: object, source: str, *, allow_one: bool = False) -> str:
    """``warn``, ``log`` or ``raise`` (case-insensitive); ``1`` means ``log`` where allowed."""
    if isinstance(value, str):
        text = value.strip().lower()
        if allow_one and text == "1":
            return "log"
        if text in MODES:
            return text
    expected = "expected one of: " + ", ".join(MODES) + (", 1" if allow_one else "")
    raise ConfigError(source, value, expected)


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


def parse_choice(value: object, source: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive)."""
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ConfigError(source, value, "expected one of: " + ", ".join(choices))


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


_KEYWORD_PARSERS: dict[str, Any] = {
    "mode": parse_mode,
    "threshold": parse_threshold,
    "window": parse_window,
    "stack_depth": parse_stack_depth,
    "ignore": parse_ignore,
    "report_path": parse_report_path,
    "log_format": lambda v, s: parse_choice(v, s, LOG_FORMATS),
    "log_target": lambda v, s: parse_choice(v, s, LOG_TARGETS),
    "dump_signal": parse_signal,
}


def from_options(base: Optional[Config] = None, /, **options: Any) -> Config:
    """Validate API keywords over ``base`` (defaults when None)."""
    config = base if base is not None else Config()
    changes: dict[str, Any] = {}
    for key, value in options.items():
        parser = _KEYWORD_PARSERS.get(key)
        if parser is None:
            known = ", ".join(sorted(_KEYWORD_PARSERS))
            raise TypeError(f"unknown executor_guard option {key!r} (known: {known})")
        changes[key] = parser(value, f"{key}=")
    return config.replace(**changes) if changes else config


def mode_from_environ(environ: Mapping[str, str]) -> Optional[str]:
    """The mode that ``EXECUTOR_GUARD`` asks for, or None when the guard is off."""
    raw = environ.get(ENV["mode"], "")
    if raw.strip() in ("", "0"):
        return None
    return parse_mode(raw, ENV["mode"], allow_one=True)


def from_environ(environ: Mapping[str, str], base: Optional[Config] = None) -> Config:
    """Read every ``EXECUTOR_GUARD_*`` option over ``base``; the mode only if set."""
    config = base if base is not None else Config()
    changes: dict[str, Any] = {}
    mode = mode_from_environ(environ)
    if mode is not None:
        changes["mode"] = mode
    for key, name in ENV.items():
        if key == "mode" or name not in environ:
            continue
        raw = environ[name]
        if key in ("window", "report_path", "ignore", "dump_signal") and not raw.strip():
            continue
        changes[key] = _KEYWORD_PARSERS[key](raw, name)
    return config.replace(**changes) if changes else config


def to_environ(config: Config) -> dict[str, str]:
    """The environment variables that reproduce ``config`` in a child process."""
    env = {
        ENV["mode"]: config.mode,
        ENV["threshold"]: str(config.threshold),
        ENV["stack_depth"]: str(config.stack_depth),
        ENV["log_format"]: config.log_format,
        ENV["log_target"]: config.log_target,
    }
    if config.window is not None:
        env[ENV["window"]] = repr(config.window)
    if config.ignore:
        env[ENV["ignore"]] = ",".join(config.ignore)
    if config.report_path is not None:
        env[ENV["report_path"]] = config.report_path
    if config.dump_signal is not None:
        env[ENV["dump_signal"]] = config.dump_signal
    return env


def strict_from_environ(environ: Mapping[str, str]) -> bool:
    """Whether ``EXECUTOR_GUARD_STRICT`` asks bad configuration to stop the process."""
    return environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
