"""The one site schema: every per-site field of the JSON report, once.

Each :class:`Field` says what type a report file must hold there and how
several processes' values merge; its place in :data:`SITE_FIELDS` is its
place in the JSON report and in the text summary. The JSON writer, the
validator, the merger and the text summary in ``_report`` all iterate over
:data:`SITE_FIELDS`. A new per-site figure is one counter in the registry (its
slot, where it is counted, its entry in ``view``) and one row here, plus a
line of text in ``_report`` if the summary should show it.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from typing import Any, Callable, Optional

FINDINGS = ("churn", "nowait_pending", "never_shutdown")
SHUTDOWN_MODES = ("context", "wait", "nowait", "never", "open")


def findings(site: dict[str, Any]) -> list[str]:
    """The site's findings, in a fixed order (none for an ignored site)."""
    if site.get("ignored"):
        return []
    found = []
    if site.get("churn"):
        found.append("churn")
    if site.get("nowait_pending"):
        found.append("nowait_pending")
    if site.get("shutdown", {}).get("never"):
        found.append("never_shutdown")
    return found


#: The shortest span between a site's first and last creation that a
#: per-minute rate is given for: 60 pools within 3 ms are a burst, not
#: 1.2 million a minute.
MIN_RATE_SECONDS = 1.0


def rate_per_min(site: dict[str, Any]) -> Optional[float]:
    """Creations per minute between the first and the last one.

    None for fewer than two creations, and for a burst shorter than
    :data:`MIN_RATE_SECONDS`, which no per-minute figure describes.
    """
    span: float = site["last_at"] - site["first_at"]
    attempts: int = site["created"] + site.get("refused", 0)
    if attempts < 2 or span < MIN_RATE_SECONDS:
        return None
    return round(attempts * 60.0 / span, 1)


# -- merge rules: (into, value) -> merged ------------------------------------------


def _sum(into: Any, value: Any) -> Any:
    return into + value


def _max(into: Any, value: Any) -> Any:
    return max(into, value)


def _min(into: Any, value: Any) -> Any:
    return min(into, value)


def _first(into: Any, value: Any) -> Any:
    return into


def _add_tables(into: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    merged = dict(into)
    for key, count in value.items():
        if isinstance(count, dict):  # stack_sampling's constants stay as they are
            continue
        merged[key] = merged.get(key, 0) + count if key not in ("first", "every") else count
    return merged


def _union_findings(into: list[str], value: list[str]) -> list[str]:
    return [f for f in FINDINGS if f in into or f in value]


def _any(into: bool, value: bool) -> bool:
    return bool(into or value)


def _merge_stacks(into: list[dict[str, Any]], value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import json

    from ._registry import MAX_STACKS

    stacks: dict[str, dict[str, Any]] = {}
    for stack in into + value:
        key = json.dumps(stack["frames"], sort_keys=True)
        if key in stacks:
            stacks[key] = dict(stacks[key], count=stacks[key]["count"] + stack["count"])
        else:
            stacks[key] = dict(stack)
    return sorted(stacks.values(), key=lambda s: -s["count"])[:MAX_STACKS]


# -- type checks for files: value -> problem or None --------------------------------


def _is(kind: Any, label: str) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if isinstance(value, bool) and kind is not bool:
            return f"expected {label}, got a boolean"
        if not isinstance(value, kind):
            return f"expected {label}, got {type(value).__name__}"
        return None

    return check


def _optional(check: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    return lambda value: None if value is None else check(value)


def _table(value: Any) -> Optional[str]:
    if not isinstance(value, dict):
        return f"expected an object of counts, got {type(value).__name__}"
    for key, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int):
            return f"expected counts, got {type(count).__name__} for {key!r}"
    return None


def _frame(value: Any) -> Optional[str]:
    if not isinstance(value, dict):
        return f"expected a frame object, got {type(value).__name__}"
    for key, kind in (("file", str), ("line", int), ("function", str)):
        if not isinstance(value.get(key), kind) or isinstance(value.get(key), bool):
            return f"frame {key!r} missing or not a {kind.__name__}"
    if value.get("source") is not None and not isinstance(value["source"], str):
        return "frame 'source' is not a string"
    return None


def _stacks(value: Any) -> Optional[str]:
    if not isinstance(value, list):
        return f"expected a list of stacks, got {type(value).__name__}"
    for index, stack in enumerate(value):
        if not isinstance(stack, dict) or not isinstance(stack.get("frames"), list):
            return f"stack {index} is not an object with a list of frames"
        count = stack.get("count")
        if isinstance(count, bool) or not isinstance(count, int):
            return f"stack {index} has no integer count"
        for frame in stack["frames"]:
            problem = _frame(frame)
            if problem is not None:
                return f"stack {index}: {problem}"
    return None


def _timeline(value: Any) -> Optional[str]:
    if not isinstance(value, list):
        return f"expected a list of [seconds, live] samples, got {type(value).__name__}"
    for index, entry in enumerate(value):
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or isinstance(entry[0], bool)
            or not isinstance(entry[0], (int, float))
            or isinstance(entry[1], bool)
            or not isinstance(entry[1], int)
        ):
            return f"sample {index} is not [seconds, live pools]"
    return None


def _busiest_timeline(into: list[list[Any]], value: list[list[Any]]) -> list[list[Any]]:
    """A merged site shows the timeline of the process with the highest peak.

    Live counts of processes running at different times do not add up
    sample by sample; the busiest process shows the pile-up.
    """
    peak = max((n for _, n in into), default=-1)
    return value if max((n for _, n in value), default=-1) > peak else into


def _findings(value: Any) -> Optional[str]:
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        return "expected a list of finding names"
    return None


_INT = _is(int, "an integer")
_NUMBER = _is((int, float), "a number")
_STR = _is(str, "a string")


class Field:
    """One per-site field of the report."""

    __slots__ = ("check", "default", "merge", "name", "required")

    def __init__(
        self,
        name: str,
        check: Callable[[Any], Optional[str]],
        merge: Callable[[Any, Any], Any],
        required: bool = False,
        default: Optional[Callable[[], Any]] = None,
    ) -> None:
        self.name = name
        self.check = check
        self.merge = merge
        self.required = required
        #: What a report file that lacks the field is read as (None: left out).
        self.default = default


#: Every per-site field, in the order the JSON report writes them and the text
#: summary its lines. ``file``, ``line`` and ``function`` identify a site,
#: with ``creator`` when it is another line (merging is by :func:`site_key`).
SITE_FIELDS: tuple[Field, ...] = (
    Field("file", _STR, _first, required=True),
    Field("line", _INT, _first, required=True),
    Field("function", _STR, _first, required=True),
    # The site's source line, whitespace collapsed, read when the report is
    # made: what a baseline and a diff know the site by once lines move.
    Field("code", _optional(_STR), _first, default=lambda: None),
    Field("module", _STR, _first, default=str),
    Field("classes", _table, _add_tables, default=dict),
    Field("created", _INT, _sum, required=True),
    Field("refused", _INT, _sum, default=int),
    Field("live", _INT, _sum, default=int),
    Field("peak_live", _INT, _max, default=int),
    Field("first_at", _NUMBER, _min, default=float),
    Field("last_at", _NUMBER, _max, default=float),
    # Recomputed after a merge; None for fewer than two creations.
    Field("rate_per_min", _optional(_NUMBER), _first, default=lambda: None),
    Field("shutdown", _table, _add_tables, required=True),
    Field("nowait_pending", _INT, _sum, default=int),
    Field("cancel_futures", _INT, _sum, default=int),
    Field("threads", _table, _add_tables, default=dict),
    Field("max_workers", _table, _add_tables, default=dict),
    Field("creator", _frame, _first),
    # The creator's source line, as ``code`` is the site's.
    Field("creator_code", _optional(_STR), _first, default=lambda: None),
    # The application frame the site is; None when the stack held no
    # application code (the site is then the creator, a library line).
    Field("app_frame", _optional(_frame), _first, default=lambda: None),
    Field("findings", _findings, _union_findings, required=True),
    # What to do, one sentence chosen from the evidence (``_hints``); None
    # without findings. Recomputed after a merge, and for files that lack it.
    Field("hint", _optional(_STR), _first, default=lambda: None),
    Field("ignored", _is(bool, "a boolean"), _any, default=bool),
    Field("stacks", _stacks, _merge_stacks, default=list),
    Field("stack_sampling", _table, _add_tables, default=dict),
    # Samples of [seconds since start, live pools], bounded and thinned (the pile-up).
    Field("timeline", _timeline, _busiest_timeline, default=list),
)


_OPT_INT = _optional(_INT)
_OPT_STR = _optional(_STR)
_OPT_NUMBER = _optional(_NUMBER)


def _strings(value: Any) -> Optional[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "expected a list of strings"
    return None


#: The report's other blocks: ``{block: {key: check}}``. A key may be absent
#: (older reports, other writers); present, it must have its type, since the
#: summary, the merge and ``--fail-on`` read it.
BLOCK_FIELDS: dict[str, dict[str, Callable[[Any], Optional[str]]]] = {
    "process": {
        "pid": _OPT_INT,
        "argv": _optional(_strings),
        "python": _OPT_STR,
        "cwd": _OPT_STR,
        "started_at": _OPT_STR,
        "reported_at": _OPT_STR,
        "threads": _OPT_INT,
        "peak_threads": _OPT_INT,
        "rss_bytes": _OPT_INT,
        "fds": _OPT_INT,
    },
    "config": {
        "mode": _OPT_STR,
        "threshold": _OPT_INT,
        "window": _OPT_NUMBER,
        "stack_depth": _OPT_INT,
        "ignore": _optional(_strings),
        "app": _optional(_strings),
        "max_sites": _OPT_INT,
    },
    "totals": {
        "pools": _INT,
        "refused": _INT,
        "sites": _INT,
        "sites_with_findings": _INT,
        "overflow_creations": _INT,
    },
}


def site_key(site: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a site across reports: its frame and, when another line, its creator."""
    creator = site.get("creator") or {}
    where = (creator.get("file"), creator.get("line"))
    if where == (site["file"], site["line"]):
        where = (None, None)
    return (site["file"], site["line"], site["function"], *where)


#: Fields a view holds that the JSON report does not (they become ``findings``).
VIEW_ONLY = ("churn",)
