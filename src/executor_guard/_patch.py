"""Patch the executor classes where they are defined, and undo it exactly.

Following wrapt's discipline (``wrapt/patches.py``) without importing wrapt:

* the targets are the classes in their defining modules
  (``concurrent.futures.thread.ThreadPoolExecutor``,
  ``concurrent.futures.process.ProcessPoolExecutor``), patched in place, so
  every way of reaching them sees the patch: ``concurrent.futures.X``,
  ``from concurrent.futures import X`` done earlier, and subclasses defined
  before or after (``InterpreterPoolExecutor`` is a ``ThreadPoolExecutor``
  subclass and is seen through ``super().__init__``);
* the originals are read from the class's own ``vars()``, and restored only if
  the attribute is still ours;
* a target module that is not imported yet is patched right after its import by
  a meta-path finder (wrapt's ``"module?"`` targets), so installing never
  imports ``multiprocessing``: a launched script's classes still pickle into
  spawn workers, and processes that never use pools pay nothing.

The wrappers are plain functions (``functools.wraps`` keeps names, docs and
``inspect.signature``); with the guard off they cost one global read.
"""

from __future__ import annotations

import sys
import threading

from . import _registry
from ._registry import _records  # noqa: F401 - used by generated wrappers
from .exceptions import ExecutorChurnError as _ExecutorChurnError  # noqa: F401 - used by generated wrappers

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import FrameType, ModuleType
    from typing import Any, Callable, Optional, Protocol

#: Defining module -> classes patched there.
TARGETS: dict[str, tuple[str, ...]] = {
    "concurrent.futures.thread": ("ThreadPoolExecutor",),
    "concurrent.futures.process": ("ProcessPoolExecutor",),
}


if TYPE_CHECKING:

    class Hooks(Protocol):
        """What the wrappers call while a guard is active."""

        def before_init(
            self, pool: Any, frame: Optional[FrameType]
        ) -> Optional[_registry.Record]: ...

        def init_failed(self, record: _registry.Record) -> None: ...

        def before_shutdown(
            self,
            pool: Any,
            record: _registry.Record,
            wait: Any,
            cancel_futures: Any,
            frame: Optional[FrameType],
        ) -> None: ...


#: Module name -> callbacks to run once it is imported (see when_imported).
_ON_IMPORT: dict[str, list[Callable[[ModuleType], None]]] = {}

_hooks: Optional[Hooks] = None
_patched: list[tuple[type, str, Callable[..., Any], Callable[..., Any]]] = []
_finder: Optional[_PatchOnImport] = None
_install_lock = threading.RLock()


_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08

_INIT_BODY = """
    __tracebackhide__ = True  # pytest: start the traceback at the call site
    hooks = _hooks
    if hooks is None:
        original({call})
        return
    try:
        record = hooks.before_init(self, _getframe(1))
    except _ExecutorChurnError as refused:
        # A fresh traceback: it starts here, one frame under the call site.
        raise refused.with_traceback(None) from None
    try:
        original({call})
    except BaseException:
        if record is not None:
            hooks.init_failed(record)
        raise
    if record is not None:
        record.max_workers = {workers}
"""

_SHUTDOWN_BODY = """
    hooks = _hooks
    if hooks is not None:
        record = _records.get(id(self))
        if record is not None:
            hooks.before_shutdown(self, record, {wait}, {cancel}, _getframe(1))
            # Let go of it now: when this frame ends, `self` may be the pool's
            # last reference, and a record still alive then would be queued
            # as collected.
            record = None
    return original({call})
"""


def _signature(code: Any, function: Any) -> Optional[tuple[list[str], str, dict[str, Any]]]:
    """Parameters text, call text and default bindings that mirror ``function``.

    Only plain signatures (named parameters, keyword-only ones, no ``*args``,
    ``**kwargs`` or positional-only markers) are mirrored; anything else gets
    the generic ``*args, **kwargs`` wrapper.
    """
    if code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS) or getattr(code, "co_posonlyargcount", 0):
        return None
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    positional = names[: code.co_argcount]
    keyword_only = names[code.co_argcount :]
    if not positional or any(not n.isidentifier() or n.startswith("_eg_") for n in names):
        return None
    defaults = function.__defaults__ or ()
    kwdefaults = function.__kwdefaults__ or {}
    bindings: dict[str, Any] = {}
    params: list[str] = []
    first_default = len(positional) - len(defaults)
    for index, name in enumerate(positional):
        if index >= first_default:
            bindings[f"_eg_d{index}"] = defaults[index - first_default]
            params.append(f"{name}=_eg_d{index}")
        else:
            params.append(name)
    if keyword_only:
        params.append("*")
        for name in keyword_only:
            if name in kwdefaults:
                bindings[f"_eg_k_{name}"] = kwdefaults[name]
                params.append(f"{name}=_eg_k_{name}")
            else:
                params.append(name)
    call = ", ".join(list(positional) + [f"{n}={n}" for n in keyword_only])
    return params, call, bindings


def _generate(
    original: Callable[..., Any], name: str, body: str, extra: dict[str, tuple[str, str, str]]
) -> Any:
    """Compile a wrapper of ``original`` running ``body``, with the original's signature.

    ``extra`` fills the body's other fields: ``{field: (parameter, text, fallback)}``
    puts ``text`` where ``original`` has that parameter, else ``fallback``.
    """
    code = getattr(original, "__code__", None)
    mirrored = _signature(code, original) if code is not None else None
    params: list[str]
    bindings: dict[str, Any]
    names: tuple[str, ...] = ()
    if code is None or mirrored is None:
        params = ["self", "*_eg_args", "**_eg_kwargs"]
        call = "self, *_eg_args, **_eg_kwargs"
        bindings = {}
    else:
        params, call, bindings = mirrored
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    fields = {"call": call}
    for key, (param, present, fallback) in extra.items():
        fields[key] = present if param in names else fallback
    arguments = ", ".join(["original", *bindings])
    source = (
        f"def _eg_factory({arguments}):\n"
        f"    def {name}({', '.join(params)}):"
        + body.format(**fields).replace("\n", "\n    ")
        + f"\n    return {name}\n"
    )
    import functools

    namespace: dict[str, Any] = {}
    exec(compile(source, f"<executor_guard wrapper of {name}>", "exec"), globals(), namespace)
    wrapper = namespace["_eg_factory"](original, *bindings.values())
    functools.update_wrapper(wrapper, original)
    return wrapper


#: (original function, in C) -> its wrapper. Installing again reuses the same
#: wrapper: no compile() per install, and identity is stable across cycles.
_generated: dict[tuple[Callable[..., Any], bool], Callable[..., None]] = {}

#: The parameters the C wrappers read by position or name, per method.
_C_SIGNATURES = {"__init__": ("self", "max_workers"), "shutdown": ("self", "wait")}


def _c_wrapper(original: Callable[..., None], name: str) -> Optional[Callable[..., None]]:
    """The C extension's wrapper of ``original``, when it is available and fits.

    It reads ``max_workers`` (or ``wait`` and ``cancel_futures``) where the
    stock methods have them; any other signature gets a generated wrapper.
    """
    from . import _accel

    speedups = _accel.speedups()
    code = getattr(original, "__code__", None)
    if speedups is None or code is None:
        return None
    expected = _C_SIGNATURES[name]
    names = code.co_varnames[: code.co_argcount]
    if names[: len(expected)] != expected or code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS):
        return None
    if (
        name == "shutdown"
        and "cancel_futures"
        not in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount][2:]
    ):
        return None
    import functools

    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    defaults = getattr(original, "__defaults__", None) or ()
    kwdefaults = getattr(original, "__kwdefaults__", None) or {}
    kwonly_required = tuple(n for n in names[code.co_argcount :] if n not in kwdefaults)
    wrapper: Callable[..., None] = speedups.Wrapper(
        original, name, names, code.co_argcount, code.co_argcount - len(defaults), kwonly_required
    )
    functools.update_wrapper(wrapper, original)
    return wrapper


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    from . import _accel

    key = (original, _accel.speedups() is not None)
    wrapper = _generated.get(key)
    if wrapper is None:
        wrapper = _c_wrapper(original, "__init__")
    if wrapper is None:
        # The stock constructors keep a given max_workers as is: no attribute
        # lookup then; the default is read from the pool once it is built.
        default = 'getattr(self, "_max_workers", None)'
        given = f"max_workers if max_workers is not None else {default}"
        extra = {"workers": ("max_workers", given, default)}
        wrapper = _generate(original, "__init__", _INIT_BODY, extra)
    _generated[key] = wrapper
    return wrapper


def _wrap_shutdown(original: Callable[..., None]) -> Callable[..., None]:
    from . import _accel

    key = (original, _accel.speedups() is not None)
    wrapper = _generated.get(key)
    if wrapper is None:
        wrapper = _c_wrapper(original, "shutdown")
    if wrapper is None:
        extra = {
            "wait": ("wait", "wait", "_eg_wait(_eg_args, _eg_kwargs)"),
            "cancel": ("cancel_futures", "cancel_futures", "_eg_cancel(_eg_args, _eg_kwargs)"),
        }
        wrapper = _generate(original, "shutdown", _SHUTDOWN_BODY, extra)
    _generated[key] = wrapper
    return wrapper


def _eg_wait(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("wait", True)


def _eg_cancel(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("cancel_futures", False)


_getframe = sys._getframe

_WRAPPERS = {"__init__": _wrap_init, "shutdown": _wrap_shutdown}


def _patch_module(module: ModuleType) -> None:
    for class_name in TARGETS.get(module.__name__, ()):
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            continue
        for name, wrap in _WRAPPERS.items():
            original = vars(cls).get(name)
            if original is None or any(p[0] is cls and p[1] == name for p in _patched):
                continue
            wrapper = wrap(original)
            setattr(cls, name, wrapper)
            _patched.append((cls, name, original, wrapper))


class _DeferredLoader:
    """Runs the real loader, then patches the freshly executed module."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Optional[ModuleType]:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first, so nothing of ours stays visible.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        with _install_lock:
            callbacks = _ON_IMPORT.pop(module.__name__, [])
            if _finder is not None and module.__name__ in TARGETS:
                callbacks.insert(0, _patch_module)
        for callback in callbacks:
            try:
                callback(module)
            except Exception as exc:  # never break the host's import
                from ._diagnostics import internal_error

                internal_error("setting up after importing " + module.__name__, exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PatchOnImport:
    """A meta-path finder that defers to the others and wraps their loader."""

    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if (fullname not in TARGETS and fullname not in _ON_IMPORT) or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _DeferredLoader(spec.loader)
        return spec


def install(hooks: Hooks) -> None:
    """Route the wrappers to ``hooks``; patch now or on import. Idempotent."""
    global _hooks, _finder
    with _install_lock:
        _hooks = hooks
        if _finder is None:
            _finder = _PatchOnImport()
            sys.meta_path.insert(0, _finder)
        for name in TARGETS:
            module = sys.modules.get(name)
            if module is not None:
                _patch_module(module)


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once module ``name`` is imported (now if it is).

    Only while installed: the deferred-import finder carries it out.
    """
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
        return
    with _install_lock:
        _ON_IMPORT.setdefault(name, []).append(callback)


def uninstall() -> list[str]:
    """Restore every original that is still ours; return the names left in place.

    A method that someone else patched over ours is not clobbered: our wrapper
    stays under theirs and passes straight through, since the hooks are gone.
    """
    global _hooks, _finder
    left: list[str] = []
    with _install_lock:
        _hooks = None
        if _finder is not None:
            try:
                sys.meta_path.remove(_finder)
            except ValueError:
                pass
            _finder = None
        _ON_IMPORT.clear()
        for cls, name, original, wrapper in reversed(_patched):
            if vars(cls).get(name) is wrapper:
                setattr(cls, name, original)
            else:
                left.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
        _patched.clear()
    return left


def installed() -> bool:
    """Whether the patches (or the deferred-import finder) are in place."""
    return _finder is not None
