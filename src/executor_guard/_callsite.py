"""Which frame created a pool: cheap frame walks that produce raw tuples.

Capture is cheap and formatting is late (the habit of ``tracemalloc``): the hot
path only reads ``co_filename``, ``f_lineno`` and the code's name from live
frames and keeps plain ``(file, line, function)`` tuples. No frame object, local
variable or argument value is ever kept.

The call site is the innermost *application* frame. A file is classified once
(and cached) as:

* ``INTERNAL``: ``concurrent.futures`` and executor_guard itself; always skipped,
* ``LIBRARY``: the standard library and installed third-party packages,
* ``APP``: everything else, which is the code the user can change.

The *creator* is the innermost frame that is not internal: for a pool made by
``tqdm.contrib.concurrent.thread_map`` it is tqdm's line, while the call site is
the application line that called ``thread_map``.
"""

from __future__ import annotations

import operator
import os
import sys
import weakref

from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import CodeType, FrameType
    from typing import Any, Callable, Optional

APP = 0
LIBRARY = 1
INTERNAL = 2

if TYPE_CHECKING:
    #: A frame as recorded: file as compiled, line number, function name.
    Frame = tuple[str, int, str]

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


def _library_prefixes() -> tuple[str, ...]:
    """The standard library and site-packages directories, without ``sysconfig``.

    ``sysconfig`` takes a module lock (3.12+) that a fork can leave held in the
    child for ever; ``os.__file__``, the ``sys`` prefixes and ``site`` give the
    same directories without it.
    """
    import site

    paths: list[str] = [_stdlib_dir()]
    try:
        paths.extend(site.getsitepackages())
    except Exception:  # pragma: no cover - virtualenv's old site.py
        pass
    user_site = getattr(site, "USER_SITE", None)
    if isinstance(user_site, str):
        paths.append(user_site)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        for libdir in {getattr(sys, "platlibdir", "lib"), "lib"}:
            paths.append(os.path.join(prefix, libdir, version))
    return _dirs(paths)


def _internal_prefixes() -> tuple[str, ...]:
    futures = sys.modules.get("concurrent.futures")
    location = getattr(futures, "__file__", None)
    if isinstance(location, str):
        directory = os.path.dirname(os.path.abspath(location))
    else:  # not imported yet (activation at start-up): where it will come from
        directory = os.path.join(_stdlib_dir(), "concurrent", "futures")
    return _dirs([_PACKAGE_DIR, directory])


class Classifier:
    """Classify source files as APP, LIBRARY or INTERNAL, caching by file name.

    The prefixes are computed once; the cache is a plain dict read on the hot
    path and cleared when it grows past a bound (generated code can have a
    file name per function).
    """

    def __init__(
        self,
        library: Optional[tuple[str, ...]] = None,
        internal: Optional[tuple[str, ...]] = None,
    ) -> None:
        # Computed now, in the installing thread: computed lazily, at the first
        # pool creation, they could run in a child forked mid-computation.
        self._library = _library_prefixes() if library is None else library
        self._internal = _internal_prefixes() if internal is None else internal
        self.cache: dict[str, int] = {}

    @property
    def library(self) -> tuple[str, ...]:
        """Directory prefixes of the standard library and installed packages."""
        if self._library is None:
            self._library = _library_prefixes()
        return self._library

    @property
    def internal(self) -> tuple[str, ...]:
        """Directory prefixes of concurrent.futures and executor_guard."""
        if self._internal is None:
            self._internal = _internal_prefixes()
        return self._internal

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
        if path.startswith(self.internal):
            return INTERNAL
        if path.startswith(self.library):
            return LIBRARY
        parts = path.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return LIBRARY
        return APP


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


class _Caches:
    """The classifier and the per-class constructor codes: caches, emptied on reset."""

    def __init__(self) -> None:
        self.classifier: Optional[Classifier] = None
        #: id(class) -> (weak reference to the class, its constructor code ids).
        #: Keyed by id so that a class made at run time is not kept alive.
        self.init_codes: dict[int, tuple[Any, Optional[frozenset[int]]]] = {}

    def reset(self) -> None:
        self.classifier = None
        self.init_codes.clear()

    def after_fork(self) -> None:
        """Nothing to do: no locks, and the caches stay true in the child."""


CACHES = _Caches()
STATE.register("caches", CACHES)


def classifier() -> Classifier:
    """The process's classifier, created on first use (by the first guard)."""
    found = CACHES.classifier
    if found is None:
        found = CACHES.classifier = Classifier()
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
