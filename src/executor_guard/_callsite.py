"""Which frame created a pool: cheap frame walks that produce raw tuples.

Capture is cheap and formatting is late (the habit of ``tracemalloc``): the hot
path only reads ``co_filename``, ``f_lineno`` and the code's name from live
frames and keeps plain ``(file, line, function)`` tuples. No frame object, local
variable or argument value is ever kept.

The call site is the innermost *application* frame. A file is classified once
(and cached) as:

* ``INTERNAL``: ``concurrent.futures`` and executor_guard itself; always skipped,
* ``LIBRARY``: the standard library and code an installed distribution owns
  (site-packages, or its RECORD under any other ``sys.path`` entry, such as a
  ``pip install --target`` directory),
* ``APP``: what the ``app`` option names, the package the program was started
  from (a console script's distribution, ``-m pkg``, a server's app module),
  and everything no installed distribution owns: the code the user can change.

The *creator* is the innermost frame that is not internal: for a pool made by
``tqdm.contrib.concurrent.thread_map`` it is tqdm's line, while the call site is
the application line that called ``thread_map``. A site is one application line
and one creator line: the same application line reaching two library lines
that build pools is two sites.
"""

from __future__ import annotations

import operator
import os
import posixpath
import re
import sys
import weakref

from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import CodeType, FrameType
    from typing import Any, Callable, Optional, Union

APP = 0
LIBRARY = 1
INTERNAL = 2

if TYPE_CHECKING:
    #: A frame as recorded: file as compiled, line number, function name.
    Frame = tuple[str, int, str]
    #: A site's key: its frame, plus the creator's (file, line) when they differ.
    SiteKey = Union[tuple[str, int, str], tuple[str, int, str, str, int]]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CACHE_LIMIT = 8192
#: The file name of the wrappers ``_patch`` generates.
_WRAPPER_PREFIX = "<executor_guard wrapper"

#: The qualified name of a code object (``Class.method``); plain names before 3.11.
code_name: Callable[[CodeType], str] = operator.attrgetter(
    "co_qualname" if sys.version_info >= (3, 11) else "co_name"
)


def _dirs(paths: list[str]) -> tuple[str, ...]:
    found: list[str] = []
    for path in paths:
        if not path:
            continue
        for candidate in (os.path.abspath(path), os.path.realpath(path)):
            prefix = candidate.rstrip(os.sep) + os.sep
            if prefix not in found:
                found.append(prefix)
    return tuple(found)


def _stdlib_dir() -> str:
    return os.path.dirname(os.path.abspath(os.__file__))


def _stdlib_prefixes() -> tuple[str, ...]:
    """The standard library's directories, without ``sysconfig``.

    ``sysconfig`` takes a module lock (3.12+) that a fork can leave held in the
    child for ever; ``os.__file__`` and the ``sys`` prefixes give the same
    directories without it.
    """
    paths: list[str] = [_stdlib_dir()]
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for libdir in {getattr(sys, "platlibdir", "lib"), "lib"}:
            paths.append(os.path.join(prefix, libdir, version))
    return _dirs(paths)


def _site_prefixes() -> tuple[str, ...]:
    """The site-packages directories (the user's too), from ``site``."""
    import site

    paths: list[str] = []
    try:
        paths.extend(site.getsitepackages())
    except Exception:  # pragma: no cover - virtualenv's old site.py
        pass
    user_site = getattr(site, "USER_SITE", None)
    if isinstance(user_site, str):
        paths.append(user_site)
    return _dirs(paths)


def _internal_prefixes() -> tuple[str, ...]:
    futures = sys.modules.get("concurrent.futures")
    location = getattr(futures, "__file__", None)
    if isinstance(location, str):
        directory = os.path.dirname(os.path.abspath(location))
    else:  # not imported yet (activation at start-up): where it will come from
        directory = os.path.join(_stdlib_dir(), "concurrent", "futures")
    return _dirs([_PACKAGE_DIR, directory])


# -- what installed distributions own -------------------------------------------
#
# Read with plain os and io calls rather than importlib.metadata: a sys.path
# entry first met on the hot path (a script's directory, a zipapp) is read
# there, maybe in a forked child or a signal handler, where an import (and
# its lock) must not happen; and the few files needed are read the same way
# on every Python from 3.9.

#: First path components in a RECORD that are metadata or glue, never code.
_NOT_CODE = (".dist-info", ".egg-info", ".data", ".pth")


def _read(path: str, limit: int = -1) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return stream.read(limit)
    except (OSError, ValueError):
        return None


def _record_tops(text: str, record: bool = True, base: str = "") -> set[str]:
    """The first path components of the files a RECORD (or installed-files.txt) lists.

    Paths leaving the directory (``../../bin/mysvc``) are not on it, and
    metadata directories and ``.pth`` files are not code.
    """
    tops: set[str] = set()
    for line in text.splitlines():
        # RECORD is "path,hash,size"; the path itself may hold commas.
        path = line.rsplit(",", 2)[0] if record else line
        path = path.strip().strip('"').replace("\\", "/")
        if base:
            path = posixpath.normpath(f"{base}/{path}")
        top = path.split("/", 1)[0]
        if top and top not in (".", "..", "__pycache__") and not top.endswith(_NOT_CODE):
            tops.add(top)
    return tops


def _owned(entry: str) -> frozenset[str]:
    """First path components under the ``sys.path`` entry ``entry`` that distributions own.

    ``entry`` is a prefix ending in a separator. An ``.egg-info`` counts only
    with the ``installed-files.txt`` an installer writes: without one it is
    the development metadata setuptools leaves beside a project's own sources
    (an editable install), and those sources are the user's.
    """
    directory = entry.rstrip(os.sep) or os.sep
    tops: set[str] = set()
    if os.path.isdir(directory):
        try:
            names = os.listdir(directory)
        except OSError:
            return frozenset()
        for name in names:
            if name.endswith(".dist-info"):
                text = _read(os.path.join(directory, name, "RECORD"))
                if text:
                    tops |= _record_tops(text)
            elif name.endswith(".egg-info"):
                text = _read(os.path.join(directory, name, "installed-files.txt"))
                if text:
                    tops |= _record_tops(text, record=False, base=name)
        return frozenset(tops)
    # A zip on sys.path (a zipapp, a bundle): read only if zipfile is already
    # imported, never importing it here.
    zipfile: Any = sys.modules.get("zipfile")
    if zipfile is not None and os.path.isfile(directory):
        try:
            with zipfile.ZipFile(directory) as archive:
                for member in archive.namelist():
                    head, _, tail = member.partition("/")
                    if head.endswith(".dist-info") and tail == "RECORD":
                        tops |= _record_tops(archive.read(member).decode("utf-8", "replace"))
        except Exception:  # not a zip after all, or unreadable: nothing owned
            return frozenset()
    return frozenset(tops)


def _module_names(tops: Iterable[str]) -> set[str]:
    """Top-level import names from first path components (``six.py``, ``_x.cpython-313.so``)."""
    names = set()
    for top in tops:
        name = top.split(".", 1)[0]
        if name.isidentifier() and not name.startswith("__editable__"):
            names.add(name)
    return names


# -- what the program was started from ---------------------------------------------

#: Servers and task runners that load the application module named on their
#: command line; their own code is library code.
SERVERS = frozenset(
    {
        "arq",
        "celery",
        "daphne",
        "dramatiq",
        "faust",
        "flask",
        "granian",
        "gunicorn",
        "huey",
        "hypercorn",
        "quart",
        "uvicorn",
        "waitress",
    }
)
#: Tools that run other code (tests, profilers, instrumentation wrappers):
#: being started from them says nothing about what the application is.
RUNNERS = frozenset(
    {
        "_pytest",
        "IPython",
        "coverage",
        "ddtrace",
        "debugpy",
        "executor_guard",
        "hupper",
        "ipykernel",
        "jupyter_core",
        "memray",
        "nox",
        "opentelemetry",
        "pip",
        "pydevd",
        "pyinstrument",
        "pytest",
        "scalene",
        "tox",
        "viztracer",
        "watchfiles",
    }
)
#: Options whose value names the application module (celery -A, flask --app).
_APP_OPTIONS = ("-A", "--app", "-a")
#: Options whose value is an address, a file or a class, never the application.
_VALUE_OPTIONS = frozenset(
    {"-b", "--bind", "--host", "--uds", "-c", "--config", "-k", "--worker-class", "--chdir"}
)
_TARGET = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_][\w.]*(?:\(.*\))?)?\Z")
_WRAPPER_IMPORT = re.compile(r"^from[ \t]+([A-Za-z_][\w.]*)[ \t]+import[ \t]", re.M)
_LEGACY_WRAPPER = re.compile(r"load_entry_point\(\s*['\"]([A-Za-z0-9_.\-]+)")


def served(args: list[str], environ: Optional[Mapping[str, str]] = None) -> frozenset[str]:
    """Top-level names of the application modules a server's arguments name.

    ``mysvc.wsgi:app`` (gunicorn, uvicorn, hypercorn, granian, waitress),
    ``-A proj`` / ``--app=proj`` (celery, flask), else the last bare dotted
    argument (``gunicorn mysvc.wsgi``, ``dramatiq mysvc.tasks``); values of
    address and config options (``-b localhost:8000``) are skipped.
    """
    found: list[str] = []
    bare: list[str] = []
    previous = ""
    for arg in args:
        if previous in _APP_OPTIONS:
            found.append(arg)
        elif arg.startswith("--app="):
            found.append(arg[len("--app=") :])
        elif arg.startswith("-A") and len(arg) > 2 and not arg.startswith("--"):
            found.append(arg[2:])
        elif not arg.startswith("-") and previous not in _VALUE_OPTIONS and _TARGET.match(arg):
            (found if ":" in arg else bare).append(arg)
        previous = arg
    if not found:
        flask_app = (os.environ if environ is None else environ).get("FLASK_APP")
        found = [flask_app] if flask_app else bare[-1:]
    return frozenset(
        value.partition(":")[0].partition(".")[0] for value in found if _TARGET.match(value)
    )


def wrapper_target(path: str) -> tuple[Optional[str], Optional[str]]:
    """``(module, distribution)`` a console-script wrapper at ``path`` runs, else Nones.

    pip, uv and distlib write ``from mysvc.cli import main``; old setuptools
    wrappers call ``load_entry_point('mysvc==0.1', ...)``, naming the
    distribution. A ``.py`` file is a script, not a wrapper.
    """
    if path.endswith((".py", ".pyw", ".pyc")) and not path.endswith("-script.py"):
        return None, None
    text = _read(path, 4096)
    if not text or not text.startswith("#!"):
        return None, None
    legacy = _LEGACY_WRAPPER.search(text)
    if legacy is not None:
        return None, legacy.group(1)
    imported = _WRAPPER_IMPORT.search(text)
    return (imported.group(1) if imported is not None else None), None


def _declares(text: str, script: str) -> bool:
    """Whether an ``entry_points.txt`` declares the console (or GUI) script ``script``."""
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section in ("console_scripts", "gui_scripts") and "=" in line:
            name = line.split("=", 1)[0].strip()
            if name == script:
                return True
    return False


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def script_distribution(
    script: Optional[str], distribution: Optional[str], entries: Iterable[str]
) -> set[str]:
    """Top-level names of the distribution behind a console script, from its RECORD.

    Found by the script's name in the distributions' ``entry_points.txt``, or
    by ``distribution`` (a legacy wrapper's); empty when none is found.
    """
    wanted = _normal(distribution) if distribution else None
    for entry in entries:
        directory = entry.rstrip(os.sep) or os.sep
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            info = os.path.join(directory, name)
            if wanted is not None:
                if _normal(name[: -len(".dist-info")].split("-", 1)[0]) != wanted:
                    continue
            else:
                text = _read(os.path.join(info, "entry_points.txt"))
                if not text or script is None or script not in text or not _declares(text, script):
                    continue
            record = _read(os.path.join(info, "RECORD"))
            return _module_names(_record_tops(record)) if record else set()
    return set()


def start_names(
    module: Optional[str], file: Optional[str], argv: list[str], entries: Iterable[str]
) -> frozenset[str]:
    """Top-level names of the package the program was started from (application code).

    ``module`` is ``__main__``'s spec name (``python -m``), ``file`` its file
    (a script or a console-script wrapper). A server's is the module it was
    told to load; a runner's (pytest, coverage) is nothing; a plain script's
    is nothing either (no distribution owns it: it is application code anyway).
    """
    distribution = None
    if module is not None:
        top = module.partition(".")[0]
    elif file is not None:
        wrapped, distribution = wrapper_target(file)
        if wrapped is None and distribution is None:
            return frozenset()
        top = (wrapped or "").partition(".")[0]
    else:
        return frozenset()
    if top in SERVERS:
        return served(argv[1:])
    if top in RUNNERS:
        return frozenset()
    if module is not None:
        return frozenset({top})
    script = os.path.basename(file or "")
    for suffix in ("-script.py", "-script.pyw", ".exe"):
        if script.endswith(suffix):
            script = script[: -len(suffix)]
    names = script_distribution(script, distribution, entries)
    if top:
        names.add(top)
    return frozenset(names - RUNNERS - SERVERS)


# -- the classifier ----------------------------------------------------------------


def _app_matchers(
    patterns: tuple[str, ...],
) -> tuple[Optional[re.Pattern[str]], Optional[re.Pattern[str]]]:
    """``(path matcher, module-name matcher)`` for the ``app`` option's patterns.

    A pattern with a path separator or a file extension is a path glob (a
    relative one is taken from the working directory; one without wildcards
    is that file or directory and everything under it); anything else is an
    import name pattern (``mysvc``: the package and its submodules, since
    every enclosing package name is matched too; ``mysvc.*``: its modules).
    """
    import fnmatch

    paths: list[str] = []
    names: list[str] = []
    for pattern in patterns:
        if "/" in pattern or os.sep in pattern or pattern.endswith((".py", ".pyz", ".zip")):
            glob = pattern if pattern.startswith("*") else os.path.abspath(pattern)
            translated = fnmatch.translate(glob)
            if not any(c in pattern for c in "*?["):
                translated = f"(?:{re.escape(glob.rstrip(os.sep))}(?:{re.escape(os.sep)}.*)?\\Z)"
            paths.append(translated)
        else:
            names.append(fnmatch.translate(pattern))
    path_re = re.compile("|".join(f"(?:{p})" for p in paths)) if paths else None
    name_re = re.compile("|".join(f"(?:{n})" for n in names)) if names else None
    return path_re, name_re


class Classifier:
    """Classify source files as APP, LIBRARY or INTERNAL, caching by file name.

    In order: ``concurrent.futures`` and executor_guard are INTERNAL; files
    the ``app`` patterns name are APP; the standard library is LIBRARY; the
    package the program was started from is APP; site-packages is LIBRARY;
    under any other ``sys.path`` entry, what a distribution installed there
    owns (its RECORD) is LIBRARY; everything else, which no installed
    distribution owns, is APP: the code the user can change.

    The directory prefixes and the distributions of the ``sys.path`` entries
    present now are read here, at install, in the installing thread; an entry
    that appears later is read (plain file reads, no import, no lock) the first
    time a file under it is classified. The package the program was started
    from is resolved at the first classification after ``__main__`` is known
    (at start-up it is not yet). The cache is a plain dict read on the hot
    path and cleared when it grows past a bound (generated code can have a
    file name per function) or when the start package becomes known.
    """

    def __init__(
        self,
        library: Optional[tuple[str, ...]] = None,
        internal: Optional[tuple[str, ...]] = None,
        app: tuple[str, ...] = (),
        site: Optional[tuple[str, ...]] = None,
    ) -> None:
        # Computed now, in the installing thread: computed lazily, at the first
        # pool creation, they could run in a child forked mid-computation.
        self._library = _stdlib_prefixes() if library is None else library
        self._site = _site_prefixes() if site is None else site
        self._internal = _internal_prefixes() if internal is None else internal
        self.app = tuple(app)
        self._app_paths, self._app_names = _app_matchers(self.app)
        self.cache: dict[str, int] = {}
        #: sys.path entry as written -> its absolute prefix (ending in a separator).
        self._entries: dict[str, str] = {}
        #: prefix -> first path components that distributions installed there own.
        self._owned: dict[str, frozenset[str]] = {}
        self._start: frozenset[str] = frozenset()
        #: Whether the start package is still to be resolved, and what __main__
        #: looked like when that was last tried.
        self._pending = True
        self._seen: tuple[Any, Any] = (None, None)
        for entry in self._path_prefixes():
            self._owned_by(entry)

    @property
    def library(self) -> tuple[str, ...]:
        """Directory prefixes of the standard library and of site-packages."""
        return self._library + self._site

    @property
    def internal(self) -> tuple[str, ...]:
        """Directory prefixes of concurrent.futures and executor_guard."""
        return self._internal

    @property
    def start(self) -> frozenset[str]:
        """Top-level names of the package the program was started from (once known)."""
        return self._start

    def __call__(self, filename: str) -> int:
        kind = self.cache.get(filename)
        if kind is None:
            kind = self.classify(filename)
            if len(self.cache) >= _CACHE_LIMIT:
                self.cache.clear()
            self.cache[filename] = kind
        return kind

    def classify(self, filename: str) -> int:
        """The kind of ``filename``, without the cache."""
        if filename.startswith("<"):
            # "<frozen importlib._bootstrap>" is the standard library, our
            # generated wrappers are ours; "<string>", "<stdin>" and notebook
            # cells are the user's own code.
            if filename.startswith(_WRAPPER_PREFIX):
                return INTERNAL
            return LIBRARY if filename.startswith("<frozen") else APP
        path = os.path.abspath(filename) if not os.path.isabs(filename) else filename
        if path.startswith(self._internal):
            return INTERNAL
        if self._pending:
            self._resolve_start()
        located = self._entry_of(path)
        names = _candidates(located[1]) if located is not None else ()
        if self._app_paths is not None and self._app_paths.match(path):
            return APP
        if self._app_names is not None and any(self._app_names.match(n) for n in names):
            return APP
        parts = path.split(os.sep)
        in_site = (
            path.startswith(self._site) or "site-packages" in parts or "dist-packages" in parts
        )
        if not in_site and path.startswith(self._library):
            return LIBRARY
        if names and names[0] in self._start:
            return APP
        if in_site:
            return LIBRARY
        if located is not None and located[1][0] in self._owned_by(located[0]):
            return LIBRARY
        return APP

    # -- sys.path entries and their distributions ------------------------------

    def _prefix(self, entry: str) -> str:
        prefix = self._entries.get(entry)
        if prefix is None:
            prefix = os.path.abspath(entry or os.curdir).rstrip(os.sep) + os.sep
            self._entries[entry] = prefix
        return prefix

    def _path_prefixes(self) -> list[str]:
        # A copy: the program may change sys.path while it is read.
        return [self._prefix(entry) for entry in list(sys.path) if isinstance(entry, str)]

    def _entry_of(self, path: str) -> Optional[tuple[str, list[str]]]:
        """``(entry prefix, path components under it)`` for the innermost entry holding ``path``."""
        best = ""
        for prefix in self._path_prefixes():
            if len(prefix) > len(best) and path.startswith(prefix):
                best = prefix
        if not best:
            return None
        return best, path[len(best) :].split(os.sep)

    def _owned_by(self, prefix: str) -> frozenset[str]:
        owned = self._owned.get(prefix)
        if owned is None:
            # Marked first: a re-entrant call (a signal handler's pool while
            # this reads) finds the entry owning nothing instead of recursing.
            self._owned[prefix] = frozenset()
            in_site = prefix.startswith(self._site) or prefix.startswith(self._library)
            owned = frozenset() if in_site else _owned(prefix)
            self._owned[prefix] = owned
        return owned

    def _resolve_start(self) -> None:
        """Find the start package once ``__main__`` says what was started."""
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        module = getattr(spec, "name", None)
        file = getattr(main, "__file__", None)
        module = module if isinstance(module, str) else None
        file = file if isinstance(file, str) else None
        if (module, file) == self._seen:
            return
        self._seen = (module, file)
        if module is None and file is None:
            return  # start-up, -c or the REPL: nothing started from a file yet
        if module is not None and module.partition(".")[0] == "executor_guard":
            return  # the launcher, before it runs its target
        if module is None and file is not None:
            wrapped = wrapper_target(file)[0]
            if wrapped is not None and wrapped.partition(".")[0] == "executor_guard":
                return  # the launcher's console script, before it runs its target
        self._pending = False
        names = start_names(module, file, list(sys.argv), self._path_prefixes())
        if names:
            self._start = names
            self.cache.clear()


def _candidates(parts: list[str]) -> tuple[str, ...]:
    """The dotted names a file under a sys.path entry answers to, outermost first.

    ``mysvc/api/views.py`` -> ``mysvc``, ``mysvc.api``, ``mysvc.api.views``;
    ``mysvc/__init__.py`` -> ``mysvc``, ``mysvc.__init__``.
    """
    names = [*parts[:-1], parts[-1].split(".", 1)[0]]
    return tuple(".".join(names[: i + 1]) for i in range(len(names)))


def locate(
    frame: Optional[FrameType],
    kind_of: Callable[[str], int],
    skip: Optional[frozenset[int]] = None,
    cache: Optional[dict[str, int]] = None,
) -> tuple[Optional[FrameType], Optional[FrameType]]:
    """Return ``(creator, site)`` frames walking outwards from ``frame``.

    ``skip`` holds ``id()``s of code objects to pass over as if internal: the
    ``__init__`` methods of a user subclass, which run *inside* the construction
    and would otherwise be taken as the call site of every instance. When no
    application frame exists the site is the creator. ``cache`` is the
    classifier's own file->kind dict: read directly, it spares a method call
    per frame on the hot path.
    """
    creator = None
    get = cache.get if cache is not None else None
    while frame is not None:
        code = frame.f_code
        kind = get(code.co_filename) if get is not None else None
        if kind is None:
            kind = kind_of(code.co_filename)
        if kind != INTERNAL and (skip is None or id(code) not in skip):
            if creator is None:
                creator = frame
            if kind == APP:
                return creator, frame
        frame = frame.f_back
    return creator, creator


def module_names(file: str, name: str) -> list[str]:
    """The dotted names code in ``file`` is known by, however the program was started.

    ``name`` is the module's ``__name__``; a script's ``__main__`` is also known
    by its package path (``svc/jobs.py`` in packages ``svc`` is ``svc.jobs``)
    and by its path below the working directory or a ``sys.path`` entry, so
    an ``ignore`` pattern ``svc.jobs.on_event`` matches under ``python
    svc/jobs.py``, ``python -m svc.jobs`` and an import alike.
    """
    names = [name] if name else []
    if not file.endswith(".py") or not os.path.isabs(file):
        return names
    stem = file[:-3]
    directory, base = os.path.split(stem)
    parts = [] if base == "__init__" else [base]
    while os.path.isfile(os.path.join(directory, "__init__.py")):
        directory, package = os.path.split(directory)
        parts.insert(0, package)
    if parts:
        names.append(".".join(parts))
    try:
        roots = [os.getcwd(), *sys.path]
    except OSError:  # the working directory was removed
        roots = [entry for entry in sys.path if entry]
    for root in roots:
        root = os.path.normpath(os.path.join(roots[0], root)) if not os.path.isabs(root) else root
        if stem.startswith(root.rstrip(os.sep) + os.sep):
            dotted = stem[len(root.rstrip(os.sep)) + 1 :].replace(os.sep, ".")
            if dotted.endswith(".__init__"):
                dotted = dotted[: -len(".__init__")]
            names.append(dotted)
    return list(dict.fromkeys(n for n in names if n and n != "__main__")) or names


#: The prefix of the named group each ``ignore`` pattern matches in.
_GROUP = "eg_pattern_"


def ignore_matcher(patterns: tuple[str, ...]) -> Optional[re.Pattern[str]]:
    """One regular expression for every ``ignore`` glob (compiled at install, not per pool).

    Each pattern is a named group, so a report can say which patterns never
    matched. A relative pattern (``svc/jobs.py:8``, as reports print
    locations) also matches at any directory boundary of an absolute path.
    """
    if not patterns:
        return None
    import fnmatch

    alternatives = []
    for index, pattern in enumerate(patterns):
        globs = [pattern]
        if not pattern.startswith(("/", "*")):
            globs.append("*/" + pattern)
        body = "|".join(fnmatch.translate(glob) for glob in globs)
        alternatives.append(f"(?P<{_GROUP}{index}>{body})")
    return re.compile("|".join(alternatives))


def matched_patterns(matcher: re.Pattern[str], key: Frame, module: str) -> set[int]:
    """The indexes of the ``ignore`` patterns that match this site."""
    matched: set[int] = set()
    for candidate in _ignore_candidates(key, module):
        found = matcher.match(candidate)
        if found is not None:
            # fnmatch's own groups (g0, ... on 3.9-3.11) are not patterns.
            matched.update(
                int(name[len(_GROUP) :])
                for name, text in found.groupdict().items()
                if text is not None and name.startswith(_GROUP)
            )
    return matched


def _ignore_candidates(key: Frame, module: str) -> list[str]:
    """What a pattern is matched against: ``path:line``, the path, its name, ``module.function``."""
    file, line, function = key
    candidates = [f"{file}:{line}", file, os.path.basename(file)]
    candidates += [f"{name}.{function}" for name in module_names(file, module)]
    return candidates


def matches_ignore(matcher: re.Pattern[str], key: Frame, module: str) -> bool:
    """Whether any ``ignore`` pattern matches this site."""
    return any(matcher.match(candidate) for candidate in _ignore_candidates(key, module))


def running(frame: Optional[FrameType], codes: tuple[object, ...]) -> bool:
    """Whether ``frame`` or one of its callers runs one of ``codes`` (function code objects)."""
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def describe(frame: FrameType) -> Frame:
    """The recorded form of one frame."""
    code = frame.f_code
    return (code.co_filename, frame.f_lineno, code_name(code))


def stack(
    frame: Optional[FrameType], depth: int, kind_of: Optional[Callable[[str], int]] = None
) -> tuple[Frame, ...]:
    """Up to ``depth`` frames from ``frame`` outwards, innermost last.

    With ``kind_of``, the walk stops at the first internal frame: beyond it is
    only plumbing (the launcher, a pool's worker thread), never the caller.
    """
    frames: list[Frame] = []
    append = frames.append
    name = code_name
    while frame is not None and depth > 0:
        code = frame.f_code
        if kind_of is not None and kind_of(code.co_filename) == INTERNAL:
            break
        append((code.co_filename, frame.f_lineno, name(code)))
        frame = frame.f_back
        depth -= 1
    frames.reverse()
    return tuple(frames)


#: How many pool subclasses have their constructor code ids cached.
_TYPE_CACHE_LIMIT = 1024


#: How many ``app`` settings keep a classifier of their own.
_CLASSIFIER_LIMIT = 16


class _Caches:
    """The classifiers and the per-class constructor codes: caches, emptied on reset."""

    def __init__(self) -> None:
        #: The classifier the last guard took: the report's, for marking frames.
        self.classifier: Optional[Classifier] = None
        #: One classifier per ``app`` setting (each guard's configuration has one).
        self.classifiers: dict[tuple[str, ...], Classifier] = {}
        #: id(class) -> (weak reference to the class, its constructor code ids).
        #: Keyed by id so that a class made at run time is not kept alive.
        self.init_codes: dict[int, tuple[Any, Optional[frozenset[int]]]] = {}

    def reset(self) -> None:
        self.classifier = None
        self.classifiers.clear()
        self.init_codes.clear()

    def after_fork(self) -> None:
        """Nothing to do: no locks, and the caches stay true in the child."""


CACHES = _Caches()
STATE.register("caches", CACHES)


def classifier(app: Optional[tuple[str, ...]] = None) -> Classifier:
    """The process's classifier for the ``app`` patterns, created on first use (by a guard).

    Without ``app``: the one the last guard took (or the default one).
    """
    if app is None:
        found = CACHES.classifier
        return found if found is not None else classifier(())
    classifiers = CACHES.classifiers
    found = classifiers.get(app)
    if found is None:
        if len(classifiers) >= _CLASSIFIER_LIMIT:
            classifiers.clear()
        found = classifiers[app] = Classifier(app=app)
    CACHES.classifier = found
    return found


def init_codes(cls: type) -> Optional[frozenset[int]]:
    """Code ids of ``cls``'s own constructor chain, outside ``concurrent.futures``.

    The call-site walk skips these frames: a user subclass's ``__init__`` runs
    *inside* the construction and would otherwise be the call site of every
    instance. None when nothing is left to skip.
    """
    cache = CACHES.init_codes
    entry = cache.get(id(cls))
    if entry is not None and entry[0]() is cls:
        return entry[1]
    kind_of = classifier()
    ids = set()
    for klass in cls.__mro__:
        function = vars(klass).get("__init__")
        for candidate in (function, getattr(function, "__wrapped__", None)):
            code = getattr(candidate, "__code__", None)
            if code is not None and kind_of(code.co_filename) != INTERNAL:
                ids.add(id(code))
    codes = frozenset(ids) or None
    if len(cache) >= _TYPE_CACHE_LIMIT:
        cache.clear()
    key = id(cls)

    def forget(_: object) -> None:
        cache.pop(key, None)

    try:
        ref = weakref.ref(cls, forget)
    except TypeError:  # a class that cannot be weakly referenced: not cached
        return codes
    cache[key] = (ref, codes)
    return codes
