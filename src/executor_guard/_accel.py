"""The optional C extension ``executor_guard._speedups``: loaded and configured once.

It is built at install when a C compiler is present (see ``hatch_build.py``)
and provides the patched methods themselves and the hooks' common case; the
pure-Python code stays complete without it and is the reference it must agree
with. ``EXECUTOR_GUARD_PURE_PYTHON=1`` keeps it unused.
"""

from __future__ import annotations

import importlib
import os
import threading
import time

from . import _callsite, _patch, _registry
from ._diagnostics import internal_error
from .exceptions import ExecutorChurnError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)
if TYPE_CHECKING:
    from typing import Any

_module: Any = None  # the module once configured, False when unavailable
#: The C ``before_shutdown`` hook (one for every guard), once configured.
SHUTDOWN_HOOK: Any = None


def speedups() -> Any:
    """The configured extension module; None without it, when disabled, or elsewhere.

    "Elsewhere": another interpreter of this process (mod_wsgi's
    sub-interpreters) configured it first; this one uses the Python code.
    """
    global _module, SHUTDOWN_HOOK
    if _module is None:
        _module = False
        if os.environ.get("EXECUTOR_GUARD_PURE_PYTHON", "").strip() not in ("", "0"):
            return None
        try:
            module: Any = importlib.import_module("executor_guard._speedups")
        except ImportError:
            return None
        try:
            configured = module.configure(
                types=_callsite.types,
                kinds=_callsite.classifier().cache,
                records=_registry._records,
                collected=_registry._collected,
                patch_globals=vars(_patch),
                active=threading._active,  # type: ignore[attr-defined]
                on_collect=_registry._on_collect,
                monotonic=time.monotonic,
                app=_callsite.APP,
                churn_error=ExecutorChurnError,
                Record=_registry.Record,
                Site=_registry.Site,
                TypeInfo=_callsite.TypeInfo,
                lock=_registry._lock,
            )
            if not configured:
                return None
            SHUTDOWN_HOOK = module.ShutdownHook(_registry.on_shutdown)
        except Exception as exc:
            internal_error("setting up the C hooks (the Python ones are used)", exc)
            return None
        _module = module
    return _module or None


def after_fork() -> None:
    """A forked child has a new registry lock: the C hooks must check that one."""
    if _module:
        _module.use_lock(_registry._lock)
