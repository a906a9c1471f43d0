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

The wrappers are plain functions generated with the original's signature
(``functools.wraps`` keeps names, docs and ``inspect.signature``); with the
guard off they cost one global read. ``Executor.__exit__`` is wrapped too: a
``with`` block is learnt from where ``shutdown`` is called, not by walking
frames.
"""

from __future__ import annotations

import sys
import threading

from . import _hooks, _registry
from ._state import STATE

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable, Optional

#: Defining module -> class -> methods patched there.
TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    "concurrent.futures._base": {"Executor": ("__exit__",)},
    "concurrent.futures.thread": {"ThreadPoolExecutor": ("__init__", "shutdown")},
    "concurrent.futures.process": {"ProcessPoolExecutor": ("__init__", "shutdown")},
}


class _Patches:
    """What is patched, the import finder, and the hooks the wrappers call.

    The wrappers read the hook slots as globals of this module (one global
    read when the guard is off); they are None when nothing is installed.
    """

    def __init__(self) -> None:
        self.patched: list[tuple[type, str, Callable[..., Any], Callable[..., Any]]] = []
        #: Classes given the record attribute's class default (None).
        self.defaults: list[type] = []
        self.finder: Optional[_PatchOnImport] = None
        #: Module name -> callbacks to run once it is imported (see when_imported).
        self.on_import: dict[str, list[Callable[[ModuleType], None]]] = {}
        self.lock = threading.RLock()

    def reset(self) -> None:
        uninstall()

    def after_fork(self) -> None:
        self.lock = threading.RLock()


PATCHES = _Patches()
STATE.register("patches", PATCHES)

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08


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
    original: Callable[..., Any],
    name: str,
    body: str,
    extra: dict[str, tuple[str, str, str, str]],
) -> Any:
    """Compile a wrapper of ``original`` running ``body``, with the original's signature.

    ``extra`` fills the body's other fields: ``{field: (parameter, text,
    generic, absent)}`` puts ``text`` where ``original`` has that parameter,
    ``generic`` in a ``*args, **kwargs`` wrapper (signatures not mirrored),
    and ``absent`` where a mirrored signature lacks the parameter.
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
    fields = {"call": call, "record": _registry.RECORD_ATTR}
    for key, (param, present, generic, absent) in extra.items():
        if not names:
            fields[key] = generic
        else:
            fields[key] = present if param in names else absent
    arguments = ", ".join(["original", *bindings])
    source = (
        f"def _eg_factory({arguments}):\n"
        f"    def {name}({', '.join(params)}):"
        + body.format(**fields).replace("\n", "\n    ")
        + f"\n    return {name}\n"
    )
    import functools

    namespace: dict[str, Any] = {}
    # Compiled in the hooks' namespace: the body reads their globals directly.
    exec(compile(source, f"<executor_guard wrapper of {name}>", "exec"), vars(_hooks), namespace)
    wrapper = namespace["_eg_factory"](original, *bindings.values())
    functools.update_wrapper(wrapper, original)
    return wrapper


#: Original function -> its wrapper. Installing again reuses the same
#: wrapper: no compile() per install, and identity is stable across cycles.
_generated: dict[Callable[..., Any], Callable[..., Any]] = {}


def _wrap(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    wrapper: Optional[Callable[..., Any]] = _generated.get(original)
    if wrapper is not None:
        return wrapper
    if name == "__init__":
        # A given max_workers is passed on; a default one is read from the
        # pool at its shutdown.
        workers = "max_workers if type(max_workers) is int else None"
        wrapper = _generate(
            original,
            name,
            _hooks.INIT_BODY,
            {"workers": ("max_workers", workers, "_eg_workers(_eg_args, _eg_kwargs)", "None")},
        )
    elif name == "shutdown":
        extra = {
            "wait": ("wait", "wait", "_eg_wait(_eg_args, _eg_kwargs)", "True"),
            "cancel": (
                "cancel_futures",
                "cancel_futures",
                "_eg_cancel(_eg_args, _eg_kwargs)",
                "False",
            ),
        }
        wrapper = _generate(original, name, _hooks.SHUTDOWN_BODY, extra)
    else:
        wrapper = _generate(original, name, _hooks.EXIT_BODY, {})
    _generated[original] = wrapper
    return wrapper


def _patch_module(module: ModuleType) -> None:
    patched = PATCHES.patched
    for class_name, methods in TARGETS.get(module.__name__, {}).items():
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            continue
        if "__init__" in methods:
            _hooks.stock(cls)
        # Every patched class, Executor included: any executor's __exit__ and
        # shutdown then find the default, and never ask a __getattr__ for it.
        if _registry.RECORD_ATTR not in vars(cls):
            setattr(cls, _registry.RECORD_ATTR, None)
            PATCHES.defaults.append(cls)
        for name in methods:
            original = vars(cls).get(name)
            if original is None or any(p[0] is cls and p[1] == name for p in patched):
                continue
            wrapper = _wrap(original, name)
            setattr(cls, name, wrapper)
            patched.append((cls, name, original, wrapper))


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
        with PATCHES.lock:
            callbacks = PATCHES.on_import.pop(module.__name__, [])
            if PATCHES.finder is not None and module.__name__ in TARGETS:
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
        wanted = fullname in TARGETS or fullname in PATCHES.on_import
        if not wanted or fullname in self._busy:
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


def install() -> None:
    """Route the wrappers to the hooks; patch now or on import. Idempotent."""
    with PATCHES.lock:
        if PATCHES.finder is None:
            PATCHES.finder = _PatchOnImport()
            sys.meta_path.insert(0, PATCHES.finder)
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
    with PATCHES.lock:
        PATCHES.on_import.setdefault(name, []).append(callback)


def uninstall() -> list[str]:
    """Restore every original that is still ours; return the names left in place.

    A method that someone else patched over ours is not clobbered: our wrapper
    stays under theirs and passes straight through, since the hooks are gone.
    """
    left: list[str] = []
    with PATCHES.lock:
        finder = PATCHES.finder
        if finder is not None:
            try:
                sys.meta_path.remove(finder)
            except ValueError:
                pass
            PATCHES.finder = None
        PATCHES.on_import.clear()
        for cls, name, original, wrapper in reversed(PATCHES.patched):
            if vars(cls).get(name) is wrapper:
                setattr(cls, name, original)
            else:
                left.append(f"{cls.__module__}.{cls.__qualname__}.{name}")
        PATCHES.patched.clear()
        for cls in PATCHES.defaults:
            if vars(cls).get(_registry.RECORD_ATTR, _registry) is None:
                delattr(cls, _registry.RECORD_ATTR)
        PATCHES.defaults.clear()
    return left


def installed() -> bool:
    """Whether the patches (or the deferred-import finder) are in place."""
    return PATCHES.finder is not None
