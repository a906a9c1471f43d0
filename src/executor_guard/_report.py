"""Reports: a registry snapshot as a dict (the JSON schema), as text, as a file.

A :class:`Report` wraps the schema dict, so a report loaded from a file or
merged from several renders exactly like one made in-process. Nothing here
runs on the hot path; source lines are read with ``linecache`` only for text.
"""

from __future__ import annotations

import datetime
import json
import linecache
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ._callsite import APP, classifier
from ._config import Config
from ._hints import hint, library_creator, library_path
from ._registry import MAX_SITES, OTHER, Snapshot
from ._schema import (
    BLOCK_FIELDS,
    FINDINGS,
    SHUTDOWN_MODES,
    SITE_FIELDS,
    findings,
    rate_per_min,
    site_key,
)
from ._version import __version__
from .exceptions import ExecutorGuardError

SCHEMA = 1
__all__ = ["FINDINGS", "SHUTDOWN_MODES", "Report", "ReportFileError", "build", "load", "merge"]


def write_atomically(path: str, text: str, mode: Optional[int] = None) -> str:
    """Write ``text`` to ``path`` atomically, readable by its owner only; return the path.

    The data goes to a new, exclusively created temporary file in the same
    directory (never through an existing path or symlink), is flushed to disk,
    then renamed over ``path``: a reader sees the old file or the whole new one.
    ``mode`` replaces the owner-only permissions (a baseline is a shared file).
    """
    target = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(target)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return target


class ReportFileError(ExecutorGuardError):
    """A file given to ``report`` is not a readable executor_guard report."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _is_app(filename: str) -> bool:
    return classifier()(filename) == APP


def _abs(filename: str) -> str:
    if filename.startswith("<") or os.path.isabs(filename):
        return filename
    return os.path.abspath(filename)


def _frame(frame: tuple[str, int, str]) -> dict[str, Any]:
    """A stack frame; an application frame keeps its source line as the process saw it."""
    file, line, function = frame
    app = _is_app(file)
    written: dict[str, Any] = {"file": _abs(file), "line": line, "function": function, "app": app}
    if app:
        written["source"] = _source(file, line) or None
    return written


def normalize_code(code: Optional[str]) -> Optional[str]:
    """A source line as an identity: whitespace collapsed; None when there is none."""
    if not code:
        return None
    return " ".join(code.split()) or None


def source_code(file: str, line: int) -> Optional[str]:
    """The normalized text of line ``line`` of ``file``, or None when it has no source."""
    try:
        return normalize_code(linecache.getline(file, line))
    except Exception:
        return None


#: How a registry view's value becomes the JSON value, where they differ.
_WRITERS: dict[str, Any] = {
    "file": _abs,
    "creator": lambda frame: {"file": _abs(frame[0]), "line": frame[1], "function": frame[2]},
    "app_frame": lambda frame: (
        None if frame is None else {"file": _abs(frame[0]), "line": frame[1], "function": frame[2]}
    ),
    "first_at": lambda t: round(t, 6),
    "last_at": lambda t: round(t, 6),
    "stacks": lambda stacks: [
        {"count": count, "frames": [_frame(f) for f in frames]} for count, frames in stacks
    ],
    "timeline": lambda samples: [[round(t, 4), live] for t, live in samples],
}
#: Fields computed from the others rather than copied from the view.
_DERIVED: dict[str, Any] = {
    "rate_per_min": rate_per_min,
    "findings": findings,
    "hint": lambda view: hint(view, findings(view)),
    "code": lambda view: source_code(view["file"], view["line"]),
    "creator_code": lambda view: source_code(view["creator"][0], view["creator"][1]),
}


def _site_dict(view: dict[str, Any]) -> dict[str, Any]:
    site: dict[str, Any] = {}
    for field in SITE_FIELDS:
        name = field.name
        derive = _DERIVED.get(name)
        if derive is not None:
            site[name] = derive(view)
            continue
        write = _WRITERS.get(name)
        site[name] = write(view[name]) if write is not None else view[name]
    return site


def _frame_key(frame: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (frame.get("file"), frame.get("line"), frame.get("function"))


def by_creator(sites: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Library lines that built pools for several application lines, with their totals.

    Each line alone may stay under the threshold (43 pools from 8 test lines
    through one library line): the group is what the user has to fix. A group
    is ``churn`` when its attempts reach the threshold, and with a window
    when they all fell within one window. Ignored sites take no part.
    Derived from the sites alone, so a loaded or merged report recomputes it.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for site in sites:
        creator = library_creator(site)
        if creator is None or site.get("ignored"):
            continue
        groups.setdefault(creator, []).append(site)
    threshold, window = config.get("threshold"), config.get("window")
    result = []
    for (file, line, function), members in groups.items():
        if len(members) < 2:
            continue
        attempts = sum(m["created"] + m.get("refused", 0) for m in members)
        span = max(m["last_at"] for m in members) - min(m["first_at"] for m in members)
        churn = (
            isinstance(threshold, int)
            and attempts >= threshold
            and (window is None or (isinstance(window, (int, float)) and span <= window))
        )
        found = ["churn"] if churn else []
        evidence: dict[str, Any] = {
            "file": None,
            "line": None,
            "creator": {"file": file, "line": line, "function": function},
            "classes": {},
            "shutdown": {},
            "threads": {},
        }
        for member in members:
            for table in ("classes", "shutdown", "threads"):
                for key, count in member[table].items():
                    evidence[table][key] = evidence[table].get(key, 0) + count
        members = sorted(members, key=lambda m: (-m["created"], m["file"], m["line"]))
        result.append(
            {
                "creator": {"file": file, "line": line, "function": function},
                "created": sum(m["created"] for m in members),
                "refused": sum(m.get("refused", 0) for m in members),
                "sites": [
                    {
                        "file": m["file"],
                        "line": m["line"],
                        "function": m["function"],
                        "created": m["created"],
                        "findings": m["findings"],
                    }
                    for m in members
                ],
                "findings": found,
                "hint": hint(evidence, found),
            }
        )
    result.sort(key=lambda g: (-(g["created"] + g["refused"]), str(g["creator"]["file"])))
    return result


def build(
    snapshot: Snapshot, config: Config, figures: dict[str, Optional[int]], now: float
) -> dict[str, Any]:
    """The JSON report for ``snapshot`` (the schema the README documents)."""
    sites = [_site_dict(view) for view in snapshot.sites]
    threads = figures.get("threads")
    peak = max(snapshot.peak_threads, threads or 0) or None
    config_block = config.to_dict()
    config_block["max_sites"] = MAX_SITES
    return {
        "schema": SCHEMA,
        "tool": {"name": "executor_guard", "version": __version__},
        "process": {
            "pid": os.getpid(),
            "argv": list(sys.argv),
            "python": ".".join(str(part) for part in sys.version_info[:3]),
            "cwd": snapshot.started_cwd,
            "started_at": _iso(snapshot.started_wall),
            "reported_at": _iso(now),
            "threads": threads,
            "peak_threads": peak,
            "rss_bytes": figures.get("rss_bytes"),
            "fds": figures.get("fds"),
        },
        "config": config_block,
        "totals": {
            "pools": snapshot.pools,
            "refused": snapshot.refused,
            "sites": len(sites),
            "sites_with_findings": sum(1 for s in sites if s["findings"]),
            "overflow_creations": snapshot.overflow,
        },
        "sites": sites,
        "by_creator": by_creator(sites, config_block),
        "ignore_unmatched": ignore_unmatched(config.ignore, sites),
    }


def ignore_unmatched(patterns: Sequence[str], sites: list[dict[str, Any]]) -> list[str]:
    """The ``ignore`` patterns that matched no call site: a typo, or a site that moved."""
    if not patterns:
        return []
    from ._callsite import ignore_matcher, matched_patterns

    matcher = ignore_matcher(tuple(patterns))
    if matcher is None:
        return []
    matched: set[int] = set()
    for site in sites:
        key = (site["file"], site["line"], site["function"])
        matched |= matched_patterns(matcher, key, site.get("module") or "")
    return [pattern for index, pattern in enumerate(patterns) if index not in matched]


class Report:
    """A report: ``to_dict()``, ``to_text()``, ``write_json(path)``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON schema the README documents (a deep copy)."""
        copied: dict[str, Any] = json.loads(json.dumps(self._data))
        return copied

    @property
    def sites(self) -> list[dict[str, Any]]:
        """The call sites, largest first (read-only view of the data)."""
        sites: list[dict[str, Any]] = self._data["sites"]
        return sites

    def flagged(self, level: str = "any") -> list[dict[str, Any]]:
        """Sites with findings: ``churn`` only, or ``any`` finding; a baseline's known ones pass."""
        sites = [s for s in self.sites if not s.get("known")]
        if level == "churn":
            return [s for s in sites if "churn" in s["findings"]]
        return [s for s in sites if s["findings"]]

    def flagged_groups(self) -> list[dict[str, Any]]:
        """``by_creator`` groups that churn, unless a baseline knows every site of theirs.

        Groups only ever have ``churn``, so they count at ``--fail-on churn``
        and ``any`` alike.
        """
        known = {site_key(s)[:3] for s in self.sites if s.get("known")}
        return [
            group
            for group in self._data.get("by_creator") or []
            if group["findings"] and not all(_frame_key(m) in known for m in group["sites"])
        ]

    def site(self, file: str, line: Optional[int] = None) -> Optional[dict[str, Any]]:
        """The first site whose file ends with ``file`` (and at ``line`` if given)."""
        for entry in self.sites:
            if entry["file"].endswith(file) and (line is None or entry["line"] == line):
                return entry
        return None

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self._data, indent=indent, sort_keys=False) + "\n"

    def to_text(self, *, limit: Optional[int] = 10) -> str:
        """A human summary: flagged sites first, with their creation stacks (None: all)."""
        return render_text(self._data, limit=limit)

    def to_markdown(self, *, limit: Optional[int] = 10) -> str:
        """The summary as Markdown: a CI job summary or a pull-request comment."""
        return render_markdown(self._data, limit=limit)

    def write_json(self, path: str) -> str:
        """Write the report with :func:`write_atomically`; return the path.

        ``{pid}`` in ``path`` expands.
        """
        return write_atomically(path.replace("{pid}", str(os.getpid())), self.to_json())

    def to_html(self) -> str:
        """The report as one self-contained HTML page (see ``_html``)."""
        from ._html import render

        return render(self._data)

    def __repr__(self) -> str:
        totals = self._data.get("totals", {})
        return (
            f"<Report pools={totals.get('pools')} sites={totals.get('sites')} "
            f"flagged={totals.get('sites_with_findings')}>"
        )


# -- text ----------------------------------------------------------------


#: The directory paths are shown relative to while a report renders (its
#: process's working directory at start); None: today's working directory.
_root: list[Optional[str]] = [None]


def short_path(path: str, root: Optional[str] = None) -> str:
    """``path`` relative to ``root`` (else the working directory) when it lies below it.

    While a report renders, the root is the directory its process started in,
    so a program that changed directory does not change how its paths read.
    Library and stdlib files read from their package root
    (``asyncio/base_events.py``, ``flask/app.py``) wherever they are installed.
    """
    library = library_path(path)
    if library is not None:
        return library
    try:
        relative = os.path.relpath(path, root or _root[0] or os.curdir)
    except (ValueError, OSError):
        return path
    return relative if not relative.startswith("..") else path


def plural(count: int, noun: str) -> str:
    """``count noun``, the noun in the plural unless the count is 1."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _counts(table: dict[str, int]) -> str:
    items = sorted(table.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {count}" for name, count in items) or "-"


def _owner(path: str) -> str:
    """A short name for where a library frame comes from: its top-level package."""
    if path.startswith("<"):
        return path.strip("<>").split()[-1].split(".")[0]
    parts = path.replace(os.sep, "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            index = parts.index(marker)
            if index + 1 < len(parts):
                return parts[index + 1].split(".")[0]
    return os.path.splitext(parts[-1])[0]


def _source(file: str, line: int) -> str:
    try:
        return linecache.getline(file, line).strip()
    except Exception:
        return ""


def _heading(site: dict[str, Any]) -> list[str]:
    findings = ", ".join(site["findings"]) or "no findings"
    line = f"[{findings}] {short_path(site['file'])}:{site['line']} in {site['function']}"
    return [line + _against_baseline(site)]


def _against_baseline(site: dict[str, Any]) -> str:
    """How a site compares with the baseline, when one was applied and knew the site."""
    had = site.get("baseline_findings")
    if had is None or site.get("known"):
        return ""
    new = [f for f in site["findings"] if f not in had]
    return f" (worse than the baseline: {', '.join(new)} new)"


def rate_text(site: dict[str, Any]) -> str:
    """How fast a site created, as text, HTML and markdown say it ("" for one pool).

    ``2917.6/min over 1.2s``; a burst, which ``rate_per_min`` gives no figure
    for, is ``within 3 ms``; a merged site says across how many processes.
    """
    rate = site.get("rate_per_min")
    span = site.get("last_at", 0.0) - site.get("first_at", 0.0)
    across = f" across {site['processes']} processes" if site.get("processes", 1) > 1 else ""
    if rate is not None:
        return f"{rate:g}/min over {span:.1f}s{across}"
    if site.get("created", 0) + site.get("refused", 0) < 2 or span < 0:
        return ""
    within = f"{span * 1000:.0f} ms" if span < 1 else f"{span:.1f}s"
    return f"within {within}{across}"


def _created(site: dict[str, Any]) -> list[str]:
    classes = _counts(site["classes"])
    rate = rate_text(site)
    rate = (" " + rate if rate.startswith("within") else ", " + rate) if rate else ""
    refused = f", {site['refused']} refused" if site.get("refused") else ""
    return [f"    created {site['created']}{refused} ({classes}){rate}"]


def _live(site: dict[str, Any]) -> list[str]:
    return [f"    {live_text(site)}"]


def _shutdown(site: dict[str, Any]) -> list[str]:
    modes = {m: n for m, n in site["shutdown"].items() if n}
    mode_text = _counts(modes) if modes else "-"
    if site.get("nowait_pending"):
        mode_text += f" ({site['nowait_pending']} with work still pending or running)"
    return [f"    shutdown: {mode_text}"]


#: Thread names listed one by one up to this many; past it they are summarised.
MAX_NAMES_SHOWN = 4


def threads_text(site: dict[str, Any]) -> str:
    """The threads that created a site's pools, summarised past a few names (text and HTML)."""
    threads = site.get("threads") or {}
    names = [name for name in threads if name != OTHER]
    if len(names) <= MAX_NAMES_SHOWN:
        return _counts(threads)
    least = "at least " if OTHER in threads else ""
    if all(count == 1 for name, count in threads.items() if name != OTHER):
        # A pool per thread: every creation came from a thread never seen before.
        return f"one new thread per creation ({least}{len(names)} distinct names)"
    top = sorted(threads.items(), key=lambda kv: -kv[1])[:3]
    shown = ", ".join(f"{name} {count}" for name, count in top)
    return f"{least}{len(names)} distinct names; most: {shown}"


def _threads(site: dict[str, Any]) -> list[str]:
    return [f"    threads: {threads_text(site)}"]


def live_text(site: dict[str, Any]) -> str:
    """Live and peak pools; a merge's live counts are each process's at its own end."""
    if site.get("processes", 1) > 1:
        return (
            f"live at the processes' ends {site['live']} (summed), "
            f"peak live {site['peak_live']} (in one process)"
        )
    return f"live now {site['live']}, peak live {site['peak_live']}"


def _max_workers(site: dict[str, Any]) -> list[str]:
    if not site.get("max_workers"):
        return []
    sizes = sorted(site["max_workers"].items(), key=lambda kv: -kv[1])
    return ["    max_workers: " + ", ".join(f"{size} (x{n})" for size, n in sizes)]


def _creator(site: dict[str, Any]) -> list[str]:
    creator = site.get("creator") or {}
    if not creator or (creator.get("file"), creator.get("line")) == (site["file"], site["line"]):
        return []
    where = f"{short_path(creator['file'])}:{creator['line']} in {creator['function']}"
    return [f"    created inside: {where}"]


def _stacks(site: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for stack in site.get("stacks", [])[:1]:
        sampling = site.get("stack_sampling", {})
        captured = sampling.get("captured", stack["count"])
        lines.append(
            f"    creation stack (seen in {stack['count']} of the {captured} sampled creations;"
            f" > marks application frames):"
        )
        frames = stack["frames"]
        first_app = next((i for i, f in enumerate(frames) if f.get("app")), 0)
        if first_app > 1:
            # The outer frames above the first application frame are the
            # runner's plumbing (pytest, a server, runpy): one line says whose.
            owners = sorted({_owner(f["file"]) for f in frames[:first_app]})
            lines.append(f"       ... {first_app} outer frames ({', '.join(owners)})")
            frames = frames[first_app:]
        for frame in frames:
            marker = ">" if frame.get("app") else " "
            lines.append(
                f"     {marker} {short_path(frame['file'])}:{frame['line']} in {frame['function']}"
            )
            if frame.get("app"):
                # The line as the reporting process read it; files change after
                # a deploy, so today's file is read only for reports without it.
                text = (
                    frame["source"] if "source" in frame else _source(frame["file"], frame["line"])
                )
                if text:
                    lines.append(f"          {text}")
        others = len(site.get("stacks", [])) - 1
        if others > 0:
            lines.append(f"    ({others} other distinct stack(s) in the JSON report)")
    return lines


def _hint(site: dict[str, Any]) -> list[str]:
    return [f"    hint: {site['hint']}"] if site.get("hint") else []


#: The text summary's lines of a site, by the schema field that leads them;
#: they are written in the schema's order.
_TEXT: dict[str, Any] = {
    "file": _heading,
    "created": _created,
    "live": _live,
    "shutdown": _shutdown,
    "threads": _threads,
    "max_workers": _max_workers,
    "creator": _creator,
    "hint": _hint,
    "stacks": _stacks,
}


def site_text(site: dict[str, Any]) -> list[str]:
    """The text summary's lines for one site of a report, in the site schema's order."""
    lines: list[str] = []
    for field in SITE_FIELDS:
        render = _TEXT.get(field.name)
        if render is not None:
            lines.extend(render(site))
    return lines


def render_text(data: dict[str, Any], *, limit: Optional[int] = 10) -> str:
    """The text summary of a report dict."""
    previous = _root[0]
    _root[0] = (data.get("process") or {}).get("cwd") or None
    try:
        return _render_text(data, limit)
    finally:
        _root[0] = previous


def _headline(data: dict[str, Any], flagged: list[dict[str, Any]]) -> str:
    totals = data["totals"]
    config = data.get("config", {})
    window = config.get("window")
    window_text = f" within {window}s" if window else ""
    head = (
        f"executor_guard: {plural(totals['pools'], 'pool')} from "
        f"{plural(totals['sites'], 'call site')}; "
        f"{len(flagged)} with findings (mode {config.get('mode')}, "
        f"threshold {config.get('threshold')}{window_text})"
    )
    groups = len(Report(data).flagged_groups())
    if groups:
        head += f"; {plural(groups, 'library line')} churning across call sites"
    if "processes" in data:
        head += f"; merged from {len(data['processes'])} processes"
        differs = data.get("config_differs") or []
        if differs:
            head += (
                f" whose configurations differ ({', '.join(differs)}; the first report's is shown)"
            )
    return head


def _baseline_line(data: dict[str, Any]) -> list[str]:
    baseline = data.get("baseline")
    if not baseline:
        return []
    known = [s for s in data["sites"] if s.get("known")]
    with_findings = sum(1 for s in known if s["findings"])
    return [
        f"baseline {short_path(baseline['file'])}: covered {plural(len(known), 'known call site')}"
        f" ({with_findings} with findings, which pass) of its {baseline['entries']}"
    ]


def group_location(group: dict[str, Any]) -> str:
    """A ``by_creator`` group's library line, as the text shows it."""
    creator = group["creator"]
    return f"{short_path(creator['file'])}:{creator['line']} in {creator['function']}"


def _groups_text(data: dict[str, Any], limit: Optional[int]) -> list[str]:
    """The summary's section on library lines that churn for several call sites together."""
    groups = Report(data).flagged_groups()
    out: list[str] = []
    for group in groups:
        members = group["sites"]
        out.append("")
        out.append(
            f"[churn] {group['created']} pools built at {group_location(group)} "
            f"for {plural(len(members), 'call site')} together "
            f"(threshold {data.get('config', {}).get('threshold')})"
        )
        shown = members if limit is None else members[: max(limit, 1)]
        for member in shown:
            where = f"{short_path(member['file'])}:{member['line']} in {member['function']}"
            out.append(f"    {member['created']} x {where}")
        if len(shown) < len(members):
            out.append(f"    ... and {len(members) - len(shown)} more call sites")
        if group.get("hint"):
            out.append(f"    hint: {group['hint']}")
    return out


def _render_text(data: dict[str, Any], limit: Optional[int]) -> str:
    totals = data["totals"]
    config = data.get("config", {})
    sites = data["sites"]
    flagged = [s for s in sites if s["findings"] and not s.get("known")]
    limit = len(flagged) if limit is None else limit
    out = [_headline(data, flagged), *_baseline_line(data)]
    for site in flagged[:limit]:
        out.append("")
        out.extend(site_text(site))
    if len(flagged) > limit:
        out.append(
            f"... and {plural(len(flagged) - limit, 'more site')} with findings "
            "(see the JSON report, or --all)"
        )
    out.extend(_groups_text(data, limit))
    quiet = [s for s in sites if not s["findings"]]
    if quiet and flagged:
        out.append("")
        out.append(f"{plural(len(quiet), 'call site')} without findings; the busiest:")
        for site in quiet[:3]:
            where = f"{short_path(site['file'])}:{site['line']} in {site['function']}"
            mark = " (ignored)" if site.get("ignored") else ""
            out.append(f"    {site['created']} x {where}{mark}")
    ignored = [s for s in sites if s.get("ignored")]
    if ignored:
        out.append(
            f"{plural(len(ignored), 'call site')} ignored by --ignore "
            f"({sum(s['created'] for s in ignored)} pools, counted, never acted on)"
        )
    for pattern in data.get("ignore_unmatched") or ():
        out.append(f"ignore pattern {pattern!r} matched no call site")
    if totals.get("overflow_creations"):
        out.append(
            f"{totals['overflow_creations']} creations at call sites beyond the limit of "
            f"{config.get('max_sites')} sites were counted but not attributed"
        )
    process = data.get("process") or {}
    if process and "processes" not in data:
        figures = []
        if process.get("threads") is not None:
            figures.append(
                f"threads {process['threads']} (peak seen {process.get('peak_threads')})"
            )
        if process.get("rss_bytes") is not None:
            figures.append(f"rss {process['rss_bytes'] / 2**20:.1f} MiB")
        if process.get("fds") is not None:
            figures.append(f"fds {process['fds']}")
        if figures and flagged:
            out.append(f"process {process.get('pid')}: " + ", ".join(figures))
    return "\n".join(out) + "\n"


# -- markdown ----------------------------------------------------------------


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _md_site(site: dict[str, Any], against_baseline: bool) -> str:
    where = f"`{md_cell(short_path(site['file']))}:{site['line']}` in `{md_cell(site['function'])}`"
    modes = ", ".join(f"{m} {n}" for m, n in site["shutdown"].items() if n) or "-"
    findings = ", ".join(site["findings"]) or "-"
    row = f"| {where} | {findings} | {site['created']} | {site.get('peak_live', 0)} | {modes} |"
    if not against_baseline:
        return row
    status = "known" if site.get("known") else "worse" if site.get("baseline_findings") else "new"
    return f"| {status} {row}"


def render_markdown(data: dict[str, Any], *, limit: Optional[int] = 10) -> str:
    """The summary as Markdown: a headline, a table of sites, each one's text folded."""
    previous = _root[0]
    _root[0] = (data.get("process") or {}).get("cwd") or None
    try:
        sites = data["sites"]
        flagged = [s for s in sites if s["findings"] and not s.get("known")]
        known = [s for s in sites if s["findings"] and s.get("known")]
        shown = flagged if limit is None else flagged[:limit]
        out = [f"### {_headline(data, flagged)}", ""]
        out.extend(f"{line}" for line in _baseline_line(data))
        if _baseline_line(data):
            out.append("")
        if not flagged and not known:
            out.append("No call site with findings.")
            return "\n".join(out) + "\n"
        against = "baseline" in data
        head = "| call site | findings | created | peak live | shutdown |"
        out.append(f"| baseline {head}" if against else head)
        out.append("|---" * (6 if against else 5) + "|")
        out.extend(_md_site(site, against) for site in [*shown, *known])
        if len(shown) < len(flagged):
            out.append("")
            out.append(f"... and {plural(len(flagged) - len(shown), 'more site')} with findings.")
        for site in shown:
            where = f"{short_path(site['file'])}:{site['line']} in {site['function']}"
            out.extend(["", f"<details><summary>{md_cell(where)}</summary>", "", "```text"])
            out.extend(site_text(site))
            out.extend(["```", "", "</details>"])
        return "\n".join(out) + "\n"
    finally:
        _root[0] = previous


# -- files and merging -----------------------------------------------------

_REQUIRED: dict[str, type] = {
    "tool": dict,
    "process": dict,
    "config": dict,
    "totals": dict,
    "sites": list,
}


def validate(data: object, path: str) -> dict[str, Any]:
    """Return ``data`` if it is a report of a schema this version reads, else raise.

    Every site field present is checked against the site schema; the
    required ones must be present.
    """
    if not isinstance(data, dict):
        raise ReportFileError(path, f"not an executor_guard report (a JSON {type(data).__name__})")
    if "schema" not in data or not isinstance(data.get("tool"), dict):
        raise ReportFileError(path, "not an executor_guard report (no 'schema' and 'tool' keys)")
    if data["tool"].get("name") != "executor_guard":
        raise ReportFileError(
            path, f"not an executor_guard report (tool {data['tool'].get('name')!r})"
        )
    schema = data["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise ReportFileError(path, f"unknown report schema {schema!r}")
    if schema != SCHEMA:
        newer = "newer than" if schema > SCHEMA else "older than"
        raise ReportFileError(
            path, f"report schema {schema} is {newer} the one this version reads ({SCHEMA})"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(data.get(key), kind):
            raise ReportFileError(
                path, f"malformed report: {key!r} missing or not a {kind.__name__}"
            )
    for block, checks in BLOCK_FIELDS.items():
        for key, check in checks.items():
            if key in data[block]:
                problem = check(data[block][key])
                if problem is not None:
                    raise ReportFileError(path, f"malformed report: {block}.{key}: {problem}")
    unmatched = data.get("ignore_unmatched")
    if unmatched is not None and (
        not isinstance(unmatched, list) or not all(isinstance(p, str) for p in unmatched)
    ):
        raise ReportFileError(
            path, "malformed report: ignore_unmatched: expected a list of strings"
        )
    processes = data.get("processes")
    if processes is not None and (
        not isinstance(processes, list) or not all(isinstance(p, dict) for p in processes)
    ):
        raise ReportFileError(path, "malformed report: processes: expected a list of objects")
    baseline = data.get("baseline")
    if baseline is not None and not (
        isinstance(baseline, dict)
        and isinstance(baseline.get("file"), str)
        and isinstance(baseline.get("entries"), int)
    ):
        raise ReportFileError(
            path, "malformed report: baseline: expected an object with 'file' and 'entries'"
        )
    for index, site in enumerate(data["sites"]):
        if not isinstance(site, dict):
            raise ReportFileError(path, f"malformed report: sites[{index}] is not an object")
        for field in SITE_FIELDS:
            if field.name not in site:
                if field.required:
                    raise ReportFileError(
                        path, f"malformed report: sites[{index}].{field.name} is missing"
                    )
                if field.default is not None:  # renderers rely on every field
                    site[field.name] = field.default()
                continue
            problem = field.check(site[field.name])
            if problem is not None:
                raise ReportFileError(
                    path, f"malformed report: sites[{index}].{field.name}: {problem}"
                )
    for site in data["sites"]:
        if site.get("hint") is None:  # a report from before hints: derive them now
            site["hint"] = hint(site, site["findings"])
    # Derived from the sites: recomputed rather than trusted (or validated twice).
    data["by_creator"] = by_creator(data["sites"], data["config"])
    totals = data["totals"]
    totals.setdefault("pools", sum(site["created"] for site in data["sites"]))
    totals.setdefault("sites", len(data["sites"]))
    totals.setdefault("sites_with_findings", sum(1 for site in data["sites"] if site["findings"]))
    return data


def read_text(path: str) -> str:
    """The text of a report (or baseline) file; :class:`ReportFileError` saying why not."""
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except FileNotFoundError:
        raise ReportFileError(path, "no such file") from None
    except IsADirectoryError:
        raise ReportFileError(path, "is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportFileError(path, f"cannot read ({exc})") from None


def load(path: str) -> Report:
    """Read and validate a report file."""
    text = read_text(path)
    if not text.strip():
        raise ReportFileError(path, "empty file")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReportFileError(path, f"not valid JSON, perhaps truncated ({exc})") from None
    return Report(validate(data, path))


def merge(reports: Sequence[Report]) -> Report:
    """Merge reports (one per process) by call site; one report is returned as is."""
    datas: list[dict[str, Any]] = []
    seen: set[tuple[Any, Any]] = set()
    for report in reports:
        data = report.to_dict()
        process = data.get("process") or {}
        identity = (process.get("pid"), process.get("started_at"))
        if None not in identity and identity in seen:
            continue  # the same process's report given twice counts once
        seen.add(identity)
        datas.append(data)
    if len(datas) == 1:
        return Report(datas[0])
    offsets = _clock_offsets(datas)
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for data, offset in zip(datas, offsets):
        for site in data["sites"]:
            if offset is not None:
                _shift(site, offset)
            key = site_key(site)
            into = merged.get(key)
            if into is None:
                site["processes"] = 1
                merged[key] = site
                continue
            into["processes"] += 1
            for field in SITE_FIELDS:
                name = field.name
                if name in site:
                    into[name] = field.merge(into[name], site[name]) if name in into else site[name]
    first_config = datas[0]["config"]
    threshold, window = first_config.get("threshold"), first_config.get("window")
    for site in merged.values():
        if None in offsets and site["processes"] > 1:
            site["rate_per_min"] = None  # clocks that cannot be compared give no rate
        elif "last_at" in site and "first_at" in site:
            site["rate_per_min"] = rate_per_min(site)
        # One line that built the threshold's worth of pools across the processes
        # of one run churns, though no process alone did. With a window, the
        # processes' clocks cannot be compared: each process's own verdict stands.
        attempts = site["created"] + site.get("refused", 0)
        if (
            window is None
            and isinstance(threshold, int)
            and attempts >= threshold
            and not site.get("ignored")
            and "churn" not in site["findings"]
        ):
            site["findings"] = ["churn", *site["findings"]]
        site["hint"] = hint(site, site["findings"])
    sites = sorted(
        merged.values(), key=lambda s: (-(s["created"] + s.get("refused", 0)), s["file"], s["line"])
    )
    first = datas[0]
    processes = [d["process"] for d in datas]
    stamps = sorted(
        str(p[key]) for p in processes for key in ("started_at", "reported_at") if p.get(key)
    )
    result = {
        "schema": SCHEMA,
        "tool": {"name": "executor_guard", "version": __version__},
        # A merge has no one process: say so, with what it was merged from.
        "process": {
            "merged": True,
            "processes": len(processes),
            "pids": [p.get("pid") for p in processes],
            "started_at": stamps[0] if stamps else None,
            "reported_at": stamps[-1] if stamps else None,
            "cwd": first["process"].get("cwd"),
        },
        "processes": processes,
        "config": first["config"],
        "config_differs": _config_differences(datas),
        "totals": {
            "pools": sum(d["totals"].get("pools", 0) for d in datas),
            "refused": sum(d["totals"].get("refused", 0) for d in datas),
            "sites": len(sites),
            "sites_with_findings": sum(1 for s in sites if s["findings"]),
            "overflow_creations": sum(d["totals"].get("overflow_creations", 0) for d in datas),
        },
        "sites": sites,
        "by_creator": by_creator(sites, first["config"]),
        # Unmatched in the merge: unmatched in every report that configured it.
        "ignore_unmatched": [
            pattern
            for pattern in dict.fromkeys(p for d in datas for p in d.get("ignore_unmatched") or ())
            if all(
                pattern in (d.get("ignore_unmatched") or ())
                for d in datas
                if pattern in (d.get("config") or {}).get("ignore", [pattern])
            )
        ],
    }
    return Report(result)


def _started(data: dict[str, Any]) -> Optional[float]:
    stamp = (data.get("process") or {}).get("started_at")
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _clock_offsets(datas: list[dict[str, Any]]) -> list[Optional[float]]:
    """Seconds to add to each report's times to count them from the earliest start.

    A report's ``first_at``, ``last_at`` and timeline count from its own
    process's start; a merge counts from the earliest process's, by the
    processes' ``started_at``. None where a report has no start time (its
    times then stay as they are, and merged sites get no rate).
    """
    starts = [_started(data) for data in datas]
    known = [start for start in starts if start is not None]
    if not known:
        return [None] * len(datas)
    base = min(known)
    return [None if start is None else start - base for start in starts]


def _shift(site: dict[str, Any], offset: float) -> None:
    if not offset:
        return
    for key in ("first_at", "last_at"):
        if isinstance(site.get(key), (int, float)):
            site[key] = round(site[key] + offset, 6)
    timeline = site.get("timeline")
    if isinstance(timeline, list):
        site["timeline"] = [[round(t + offset, 4), live] for t, live in timeline]


def _config_differences(datas: list[dict[str, Any]]) -> list[str]:
    """The configuration keys whose values differ between the merged reports."""
    keys: list[str] = []
    for data in datas:
        for key in data["config"]:
            if key not in keys:
                keys.append(key)
    return [
        key
        for key in keys
        if len({json.dumps(d["config"].get(key), sort_keys=True) for d in datas}) > 1
    ]


def load_all(paths: Iterable[str]) -> Report:
    """Load and merge report files; the first bad file raises :class:`ReportFileError`."""
    return merge([load(path) for path in paths])
