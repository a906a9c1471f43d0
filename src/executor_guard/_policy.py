"""The policy: which attempts at a call site are churn, and what to do then (warn, log, raise).

The registry only counts. The policy alone decides thresholds, windows and
``log`` milestones: it keeps, on each site, the next attempt number at which
it wants to look again (``due``), so the hot path compares one integer and
calls :meth:`Policy.check` only at the threshold, a milestone, or (with a
window) every time. Only ``churn`` acts. The action runs outside anything the
registry holds, on the thread that built the pool, so its formatting,
structlog and psutil costs are paid a handful of times per site at most.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque

from ._diagnostics import internal_error, is_ours, say
from ._registry import NEVER, site_view
from ._state import STATE
from .exceptions import ExecutorChurnError, ExecutorChurnWarning

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from collections.abc import MutableMapping
    from types import FrameType
    from typing import Any, Optional

    from ._config import Config
    from ._registry import Site

_EVENT = "executor_churn"


def _class_names(site: dict[str, Any]) -> str:
    classes = site["classes"]
    return "/".join(sorted(classes, key=lambda name: -classes[name])) or "executor"


def _modes(site: dict[str, Any]) -> str:
    return ", ".join(f"{mode} {n}" for mode, n in site["shutdown"].items() if n) or "none yet"


def _location(site: dict[str, Any]) -> str:
    """``file:line in function``, the file shown as the summary and reports show it."""
    with STATE.importing():  # report-time imports: see _state
        from ._report import short_path

    return f"{short_path(site['file'])}:{site['line']} in {site['function']}"


def _scope(config: Config) -> str:
    return f" within {config.window:g}s" if config.window is not None else ""


class Crossing:
    """A call site crossed the churn threshold (or a later milestone) just now."""

    __slots__ = ("attempt", "first", "pool", "refused", "site")

    def __init__(self, site: Site, attempt: int, refused: bool, first: bool) -> None:
        self.site = site
        self.attempt = attempt
        self.refused = refused
        self.first = first
        #: ``(class name, thread name)`` of the pool being built: the hooks set
        #: it before :meth:`Policy.act` (only a crossing pays for the name).
        self.pool: Optional[tuple[str, str]] = None

    def view(self) -> dict[str, Any]:
        """The site's counts now, this attempt's pool included unless it is refused."""
        return site_view(self.site, None if self.refused else self.pool)


def message(crossing: Crossing, config: Config, site: Optional[dict[str, Any]] = None) -> str:
    """The one-paragraph explanation used by every mode."""
    with STATE.importing():
        from ._hints import hint
        from ._schema import findings

    site = crossing.view() if site is None else site
    names = _class_names(site)
    advice = hint(site, findings(site) or ["churn"])
    if crossing.refused:
        return (
            f"refused to create another {names} at {_location(site)}: "
            f"{crossing.attempt} attempts there{_scope(config)} "
            f"(threshold {config.threshold}, mode raise); {advice}"
        )
    pending = (
        f"; {site['nowait_pending']} shut down with wait=False while work was pending"
        if site["nowait_pending"]
        else ""
    )
    return (
        f"{names} created {site['created']} times at {_location(site)}{_scope(config)} "
        f"(threshold {config.threshold}); shutdown: {_modes(site)}{pending}; {advice}"
    )


def event(crossing: Crossing, config: Config) -> dict[str, Any]:
    """The structured ``executor_churn`` event (JSON-ready)."""
    with STATE.importing():
        from ._hints import hint
        from ._process import figures
        from ._schema import findings, rate_per_min

    site = crossing.view()
    stack = site["stacks"][0][1] if site["stacks"] else ()
    data: dict[str, Any] = {
        "event": _EVENT,
        "pid": os.getpid(),
        "site": f"{site['file']}:{site['line']} in {site['function']}",
        "file": site["file"],
        "line": site["line"],
        "function": site["function"],
        "classes": site["classes"],
        "created": site["created"],
        "refused": site["refused"],
        "threshold": config.threshold,
        "window": config.window,
        "rate_per_min": rate_per_min(site),
        "live": site["live"],
        "peak_live": site["peak_live"],
        "shutdown": site["shutdown"],
        "nowait_pending": site["nowait_pending"],
        "threads": site["threads"],
        "findings": findings(site),
        "hint": hint(site, findings(site) or ["churn"]),
        "stack": [f"{file}:{line} in {function}" for file, line, function in stack],
    }
    process = figures()
    data["process"] = {
        "threads": process["threads"],
        "rss_bytes": process["rss_bytes"],
        "fds": process["fds"],
    }
    return data


def _structlog() -> Any:
    """structlog, imported with what its module ``__getattr__`` would import later.

    structlog's ``__getattr__`` imports ``importlib.metadata`` on any unknown
    name, so a host that probes its modules (``hasattr(module, ...)`` over a
    copy of ``sys.modules``, as CPython's own test runner does) would see
    ``sys.modules`` change under it because we imported structlog. Importing
    that first keeps the probe a read.
    """
    with STATE.importing():
        import importlib.metadata  # noqa: F401 - see above

        import structlog

    return structlog


def _render_console(data: dict[str, Any]) -> str:
    structlog = _structlog()

    body = dict(data)
    stack = body.pop("stack", [])
    line: str = structlog.dev.ConsoleRenderer(colors=False)(None, "warning", body)
    if stack:
        line += "\n" + "\n".join(f"    {frame}" for frame in stack)
    return line


def _render_json(data: dict[str, Any]) -> str:
    structlog = _structlog()

    rendered = structlog.processors.JSONRenderer(sort_keys=False)(None, "warning", data)
    return rendered if isinstance(rendered, str) else rendered.decode()


def emit_log(data: dict[str, Any], config: Config, stream: Optional[Any] = None) -> None:
    """Send one event through a private structlog pipeline.

    The pipeline is built per event from structlog's processors and never
    touches the host's structlog or logging configuration. ``log_target``
    ``logging`` hands the rendered line to the stdlib logger ``executor_guard``
    so the host's handlers (and log shippers) receive it.
    """
    structlog = _structlog()

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
        with STATE.importing():
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
        proxy = structlog.wrap_logger(
            _LineWriter(target),
            processors=[add_timestamp, renderer],
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=False,
        )
    proxy.warning(name, **body)


class _LineWriter:
    """A structlog logger that writes each rendered line in one ``write`` call, with no lock.

    One call for line and newline: lines from several threads or processes
    sharing stderr do not interleave. structlog's own ``WriteLogger`` does the
    same under a lock shared by every logger of that file; a fork while another
    thread holds it (writing its line) leaves it held in the child, whose first
    line then waits for ever.
    """

    __slots__ = ("_file",)

    def __init__(self, file: Any) -> None:
        self._file = file

    def warning(self, message: str) -> None:
        """Write ``message`` and a newline, then flush."""
        self._file.write(message + "\n")
        flush = getattr(self._file, "flush", None)
        if flush is not None:
            flush()


def _milestone_after(count: int, threshold: int) -> int:
    """The next count at which ``log`` mode reports a churning site again.

    Milestones grow 1-2-5 times the threshold (10, 20, 50, 100, 200, ...), so a
    site creating a million pools logs about 15 events, not a million.
    """
    base = threshold
    while True:
        for factor in (1, 2, 5):
            if base * factor > count:
                return base * factor
        base *= 10


class Policy:
    """Decides which attempts are churn (:meth:`check`) and acts on them (:meth:`act`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        #: The baseline's verdicts, loaded at the first threshold crossing
        #: (never at start-up: most processes never cross one).
        self._baseline: Optional[Any] = None

    def configure_site(self, site: Site) -> None:
        """Set the policy's state on ``site`` (new, or after a change of configuration)."""
        config = self.config
        if config.window is None:
            site.times = None
        elif site.times is None or site.times.maxlen != config.threshold:
            site.times = deque(site.times or (), maxlen=config.threshold)
        # Re-checked at the next attempt, which moves it to the right count.
        site.due = NEVER if site.ignored else 0

    def check(self, site: Site, attempt: int, now: float) -> Optional[Crossing]:
        """Attempt number ``attempt`` at ``site`` is due: a :class:`Crossing` if it acts.

        Also moves ``site.due`` to the next attempt that needs a look. Sites
        with a window come here at every attempt (``due`` stays 0). Runs on
        the hot path's thread, outside anything the registry holds.
        """
        config = self.config
        times = site.times
        if times is not None:
            times.append(now)
            if len(times) < config.threshold or now - times[0] > config.window:  # type: ignore[operator]
                return None
        elif attempt < config.threshold:
            site.due = config.threshold
            return None
        if config.baseline is not None and self._known_churn(site):
            # Known churn is recorded, and never acted on nor looked at again.
            site.churn = True
            site.due = NEVER
            return None
        first = not site.churn
        site.churn = True
        if config.mode == "raise":
            return Crossing(site, attempt, True, first)  # every further attempt is refused
        if config.mode == "log":
            if not first and attempt < site.milestone:
                return None
            site.milestone = _milestone_after(attempt, config.threshold)
            if times is None:
                site.due = site.milestone
            return Crossing(site, attempt, False, first)
        if times is None:
            site.due = NEVER  # warn (and record-only) act once per site
        return Crossing(site, attempt, False, first) if first else None

    def _known_churn(self, site: Site) -> bool:
        """Whether the baseline already knows churn at ``site`` (then nothing acts)."""
        with STATE.importing():
            from ._baseline import Baseline, cached
            from ._report import ReportFileError

        try:
            if self._baseline is None:
                self._baseline = cached(self.config.baseline or "")
            known: bool = self._baseline.knows_churn_at(
                (site.file, site.line, site.function), site.creator
            )
            return known
        except ReportFileError as error:
            say(f"baseline {error}; every call site counts as new")
        except Exception as exc:
            if not is_ours(exc):
                raise
            internal_error(f"reading the baseline {self.config.baseline!r}", exc)
        self._baseline = Baseline(self.config.baseline or "", "", {})
        return False

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
                site=f"{site.file}:{site.line} in {site.function}",
                attempts=crossing.attempt,
                threshold=config.threshold,
            )
        if config.mode == "warn":
            self._warn(crossing, frame)
        elif config.mode == "log":
            try:
                emit_log(event(crossing, config), config)
            except Exception as exc:
                if not is_ours(exc):
                    raise
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
            if not is_ours(exc):
                raise
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
