"""The configuration file: ``[tool.executor_guard]`` in the nearest ``pyproject.toml``.

The launcher, ``report`` and the pytest plugin look for ``pyproject.toml``
in the working directory, then in each parent, and read the table of the
first one found (a file without the table configures nothing, as with
pytest and coverage). ``EXECUTOR_GUARD_CONFIG=PATH`` names the file instead;
it is also the only way the start-up hook reads a file, because searching
the directories of every Python process at start-up would cost each of
them, and production processes' working directories say little about which
project they run.

Keys are the options' API keywords (:attr:`Option.pyproject`); values are
checked by the same parsers as every other spelling, so a mistake is one line
naming the file, the key and the value. Relative paths (``baseline``,
``report_path``) are relative to the file's directory, as the file is part
of the project, wherever the command runs from.

TOML is read with the standard library's ``tomllib`` (3.11+) and with tomli,
its origin and the same parser, on 3.9 and 3.10, where it is a dependency for
those Pythons only. Both are imported only when a file is read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, Optional

from . import _config
from .exceptions import ConfigError

FILE = "pyproject.toml"
TABLE = "[tool.executor_guard]"
#: The options that name files, resolved against the configuration file's directory.
PATHS = ("baseline", "report_path")


class FileError(ConfigError):
    """The configuration file cannot be read, is not TOML, or has no usable table."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, None, problem)
        self.args = (f"{path}: {problem}",)

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownKey(ConfigError):
    """A key of the table that is no option's."""

    def __init__(self, source: str, key: str, value: object) -> None:
        super().__init__(source, value, "unknown key")
        known = ", ".join(sorted(option.pyproject for option in _config.OPTIONS))
        self.args = (f"{source}: unknown key {key!r} = {value!r} (known keys: {known})",)

    def __str__(self) -> str:
        return str(self.args[0])


class Settings:
    """What one configuration file asks for: validated values by option name."""

    def __init__(self, path: Optional[str], values: dict[str, Any]) -> None:
        #: The file read (None: no file was found).
        self.path = path
        self.values = values

    def apply(self, config: _config.Config) -> _config.Config:
        """``config`` with this file's values over it."""
        return config.replace(**self.values) if self.values else config

    def describe(self, start: Optional[str] = None) -> str:
        """The file as a header names it: relative to ``start`` when below it."""
        if self.path is None:
            return "none"
        return display(self.path, start)


def display(path: str, start: Optional[str] = None) -> str:
    """``path`` relative to ``start`` (the working directory) when below it, else as is."""
    try:
        relative = os.path.relpath(path, start or os.getcwd())
    except (ValueError, OSError):
        return path
    return path if relative.startswith("..") else relative


def find(start: str) -> Optional[str]:
    """The nearest ``pyproject.toml`` at or above ``start``, or None."""
    directory = os.path.abspath(start)
    while True:
        candidate = os.path.join(directory, FILE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, before it joined the standard library
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
    data: dict[str, Any] = tomllib.loads(text)
    return data


def read(path: str, *, explicit: bool = False, start: Optional[str] = None) -> Settings:
    """Read and validate ``path``'s table. Raises :class:`ConfigError` naming file and key.

    ``explicit``: the user named this file (``EXECUTOR_GUARD_CONFIG``), so a
    missing file or table is an error rather than nothing to configure.
    """
    name = display(path, start)
    try:
        with open(path, "rb") as stream:
            text = stream.read().decode("utf-8")
    except FileNotFoundError:
        raise FileError(name, "no such file") from None
    except IsADirectoryError:
        raise FileError(name, "is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(name, f"cannot read ({exc})") from None
    try:
        data = _loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise FileError(name, f"not valid TOML ({exc})") from None
    except ImportError:  # installed without its dependencies (pip --no-deps)
        raise FileError(name, "cannot read TOML: install tomli (Python < 3.11)") from None
    tool = data.get("tool", {})
    table = tool.get("executor_guard") if isinstance(tool, dict) else None
    if table is None:
        if explicit:
            raise FileError(name, f"no {TABLE} table")
        return Settings(path, {})
    if not isinstance(table, dict):
        raise FileError(name, f"{TABLE} is not a table")
    by_key = {option.pyproject: option for option in _config.OPTIONS}
    values: dict[str, Any] = {}
    directory = os.path.dirname(os.path.abspath(path))
    for key, value in table.items():
        source = f"{name}: {TABLE} {key}"
        option = by_key.get(key)
        if option is None:
            raise UnknownKey(f"{name}: {TABLE}", key, value)
        parsed = option.parse(value, source)
        if option.name in PATHS and isinstance(parsed, str):
            parsed = os.path.join(directory, os.path.expanduser(parsed))
        values[option.name] = parsed
    return Settings(path, values)


def explicit(environ: Mapping[str, str]) -> Settings:
    """The file ``EXECUTOR_GUARD_CONFIG`` names (it must exist and hold the table)."""
    return read(environ[_config.CONFIG_ENV].strip(), explicit=True)


def discover(environ: Mapping[str, str], start: Optional[str] = None) -> Settings:
    """The settings of the file ``EXECUTOR_GUARD_CONFIG`` names, else of the nearest one.

    No file found: empty settings (``path`` None).
    """
    if (environ.get(_config.CONFIG_ENV) or "").strip():
        return explicit(environ)
    here = start if start is not None else os.getcwd()
    path = find(here)
    if path is None:
        return Settings(None, {})
    return read(path, start=here)


def origin(
    name: str, environ: Mapping[str, str], given: Mapping[str, Any], settings: Settings
) -> str:
    """Where :func:`resolve` took option ``name`` from, as an error line names it.

    The flag, the variable, or the file's key (the same precedence as
    ``resolve``); the option's name when it is the default.
    """
    option = _config.BY_NAME[name]
    if name in given and option.flag is not None:
        return option.flag
    if _config.variable(option, environ) is not None and option.env is not None:
        return option.env
    if name in settings.values:
        return f"{settings.describe()}: {TABLE} {option.pyproject}"
    return name


def resolve(
    environ: Mapping[str, str],
    given: Mapping[str, Any],
    *,
    start: Optional[str] = None,
    names: Optional[tuple[str, ...]] = None,
) -> tuple[_config.Config, Settings]:
    """The configuration of a command: defaults < file < environment < ``given`` (the CLI).

    Returns it with the file's settings (for the pytest plugin's header and
    for naming where a value came from).
    """
    settings = discover(environ, start)
    config = settings.apply(_config.Config())
    config = _config.from_environ(environ, config, config_file=False, names=names)
    return config.replace(**given) if given else config, settings
