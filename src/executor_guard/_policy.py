"""What happens when a call site crosses the threshold: warn, log or raise.

Only ``churn`` acts. The policy runs outside the registry lock, on the thread
that built the pool, and only when the registry says a site crossed the
threshold or (``log`` mode) a later milestone, so its formatting, structlog and
psutil costs are paid a handful of times per site at most.
"""

from __future__ import annotations

import os
import sys
import time

from ._diagnostics import internal_error
from .exceptions import ExecutorChurnError, ExecutorChurnWarning

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from types import FrameType
    from typing import Any, Optional

    from ._config import Config
    from ._registry import Crossing, SiteSnapshot

_EVENT = "executor_churn"


def _class_names(site: SiteSnapshot) -> str:
    return "/".join(sorted(site.classes, key=lambda name: -site.classes[name])) or "executor"


def _modes(site: SiteSnapshot) -> str:
    return ", ".join(f"{mode} {n}" for mode, n in site.shutdown.items() if n) or "none yet"


def _scope(config: Config) -> str:
    return f" within {config.window:g}s" if config.window is not None else ""


def message(crossing: Crossing, config: Config) -> str:
    """The one-paragraph explanation used by every mode."""
    site = crossing.site
    names = _class_names(site)
    if crossing.refused:
        return (
            f"refused to create another {names} at {site.location}: "
            f"{site.created + site.refused} attempts there{_scope(config)} "
            f"(threshold {config.threshold}, mode raise); "
            f"create one pool and reuse it, or use a `with` block around a long-lived one"
        )
    pending = (
        f"; {site.nowait_pending} shut down with wait=False while work was pending"
        if site.nowait_pending
        else ""
    )
    return (
        f"{names} created {site.created} times at {site.location}{_scope(config)} "
        f"(threshold {config.threshold}); shutdown: {_modes(site)}{pending}; "
        f"create one pool and reuse it instead of one per call"
    )


def event(crossing: Crossing, config: Config) -> dict[str, Any]:
    """The structured ``executor_churn`` event (JSON-ready)."""
    from ._process import figures

    site = crossing.site
    stack = site.stacks[0][1] if site.stacks else ()
    data: dict[str, Any] = {
        "event": _EVENT,
        "pid": os.getpid(),
        "site": site.location,
        "file": site.file,
        "line": site.line,
        "function": site.function,
        "classes": site.classes,
        "created": site.created,
        "refused": site.refused,
        "threshold": config.threshold,
        "window": config.window,
        "rate_per_min": site.rate_per_min,
        "live": site.live,
        "peak_live": site.peak_live,
        "shutdown": site.shutdown,
        "nowait_pending": site.nowait_pending,
        "threads": site.threads,
        "findings": site.findings,
        "stack": [f"{file}:{line} in {function}" for file, line, function in stack],
    }
    process = figures()
    data["process"] = {
        "threads": process["threads"],
        "rss_bytes": process["rss_bytes"],
        "fds": process["fds"],
    }
    return data


def _render_console(data: dict[str, Any]) -> str:
    import structlog

    body = dict(data)
    stack = body.pop("stack", [])
    line: str = structlog.dev.ConsoleRenderer(colors=False)(None, "warning", body)
    if stack:
        line += "\n" + "\n".join(f"    {frame}" for frame in stack)
    return line


def _render_json(data: dict[str, Any]) -> str:
    import structlog

    rendered = structlog.processors.JSONRenderer(sort_keys=False)(None, "warning", data)
    return rendered if isinstance(rendered, str) else rendered.decode()


def emit_log(data: dict[str, Any], config: Config, stream: Optional[Any] = None) -> None:
    """Send one event through a private structlog pipeline.

    The pipeline is built per event from structlog's processors and never
    touches the host's structlog or logging configuration. ``log_target``
    ``logging`` hands the rendered line to the stdlib logger ``executor_guard``
    so the host's handlers (and log shippers) receive it.
    """
    import structlog

    def add_timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        # Stable key order for log shippers: event, timestamp, level, then the rest.
        stamped = {
            "event": event_dict.pop("event"),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "level": "warning",
            "logger": "executor_guard",
        }
        stamped.update(event_dict)
        return stamped

    render = _render_json if config.log_format == "json" else _render_console

    def renderer(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
        return render(dict(event_dict))

    body = dict(data)
    name = body.pop("event")
    if config.log_target == "logging":
        import logging

        logger_std = logging.getLogger("executor_guard")
        proxy = structlog.wrap_logger(
            logger_std,
            processors=[add_timestamp, renderer],
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=False,
        )
    else:
        target = stream if stream is not None else sys.stderr
        # WriteLogger writes line and newline in one call: lines from several
        # processes sharing stderr do not interleave.
        proxy = structlog.wrap_logger(
            structlog.WriteLogger(target),
            processors=[add_timestamp, renderer],
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=False,
        )
    proxy.warning(name, **body)


class Policy:
    """Turns a :class:`Crossing` into the configured action."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def act(self, crossing: Crossing, frame: Optional[FrameType]) -> None:
        """Warn, log or raise for ``crossing``; ``frame`` is the call site's frame.

        Raises :class:`ExecutorChurnError` in ``raise`` mode, and whatever a
        warning filter turns the warning into in ``warn`` mode: both are the
        user's choice and surface at the call site. Anything else that fails
        here is reported in one line and swallowed.
        """
        __tracebackhide__ = True
        config = self.config
        if crossing.refused:
            site = crossing.site
            raise ExecutorChurnError(
                message(crossing, config),
                site=site.location,
                attempts=site.created + site.refused,
                threshold=config.threshold,
            )
        if config.mode == "warn":
            self._warn(crossing, frame)
        elif config.mode == "log":
            try:
                emit_log(event(crossing, config), config)
            except Exception as exc:
                internal_error("logging an executor_churn event", exc)

    def _warn(self, crossing: Crossing, frame: Optional[FrameType]) -> None:
        __tracebackhide__ = True
        site = crossing.site
        try:
            text = message(crossing, self.config)
            # The call site's module registry, as warnings.warn() would use, so
            # the "default" action shows the warning once per location.
            module_globals = frame.f_globals if frame is not None else {}
            registry = module_globals.setdefault("__warningregistry__", {})
        except Exception as exc:
            internal_error("preparing an ExecutorChurnWarning", exc)
            return
        import warnings

        warnings.warn_explicit(
            ExecutorChurnWarning(text),
            ExecutorChurnWarning,
            site.file,
            site.line,
            module=site.module,
            registry=registry,
        )


class RecordOnly(Policy):
    """A policy that never acts: findings stay in the registry for someone to read.

    The pytest plugin uses it to fail the test phase itself, with the whole
    site in the failure text, instead of warning or raising at the call site.
    """

    def act(self, crossing: Crossing, frame: Optional[FrameType]) -> None:
        """Do nothing; the crossing is already recorded as ``churn``."""
