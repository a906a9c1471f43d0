"""Baselines: the call sites a project already knows about, and comparing reports.

A baseline is a JSON file written by ``report --write-baseline FILE
REPORTS...``; a report file works as one too. A site it knows (matched, and
no finding the baseline entry did not have) neither triggers the mode's
action nor ``--fail-on``; a new site, or a known one with a new finding
(*worse*), still does.

**Identity.** Line numbers move whenever anything above a line is edited, so
a site is identified by what the edit leaves alone:

* its file, relative to the project root: the directory holding the nearest
  ``pyproject.toml`` above the baseline file (else the baseline file's own
  directory), so a baseline written in one checkout matches in another, at
  another path (a CI runner); files outside the root are kept after their
  ``site-packages`` (installed code) or as they are;
* its function (qualified name);
* its source line, whitespace collapsed (the ``code`` the report records
  when it is made, so a report stays comparable after the file changes);
* the same three for the creator, when another line (a library's) built
  the pool.

The line number is used only where no source text was available (code run
from a string, a file gone when the report was made). Two identical lines in
one function are one site for a baseline; their counts and findings add up.
The same identity matches sites between the two reports of ``report --diff``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from ._report import Report, ReportFileError, normalize_code, source_code
from ._schema import FINDINGS
from ._version import __version__

FORMAT = 1
KIND = "executor_guard_baseline"

Identity = tuple[Any, ...]


normalize = normalize_code


def project_root(near: str) -> str:
    """The directory holding the nearest ``pyproject.toml`` at or above ``near``, else ``near``."""
    from ._pyproject import find

    directory = os.path.abspath(near)
    found = find(directory)
    return os.path.dirname(found) if found is not None else directory


def relative(path: str, root: str) -> str:
    """``path`` as a baseline writes it: below ``root``, after ``site-packages``, or as is."""
    if not os.path.isabs(path):
        return path.replace(os.sep, "/")  # already relative (a baseline's own entry)
    try:
        inside = os.path.relpath(path, root)
    except ValueError:  # another drive on Windows
        inside = os.pardir
    if not inside.startswith(os.pardir):
        return inside.replace(os.sep, "/")
    parts = path.replace(os.sep, "/").split("/")
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "site-packages:" + "/".join(parts[parts.index(marker) + 1 :])
    return path


def _anchor(code: Optional[str], line: Any) -> tuple[str, Any]:
    text = normalize(code)
    return ("code", text) if text is not None else ("line", line)


def identity(site: dict[str, Any], root: str) -> Identity:
    """What identifies ``site`` (a report's site or a baseline entry) across edits and machines."""
    creator = site.get("creator") or None
    creator_id: Optional[tuple[Any, ...]] = None
    if creator and (creator.get("file"), creator.get("line")) != (site["file"], site["line"]):
        creator_id = (
            relative(creator["file"], root),
            creator.get("function"),
            *_anchor(creator.get("code") or site.get("creator_code"), creator.get("line")),
        )
    return (
        relative(site["file"], root),
        site["function"],
        *_anchor(site.get("code"), site["line"]),
        creator_id,
    )


def _group(sites: Iterable[dict[str, Any]], root: str) -> dict[Identity, dict[str, Any]]:
    """Sites by identity; sites sharing one add their counts and findings up."""
    grouped: dict[Identity, dict[str, Any]] = {}
    for site in sites:
        key = identity(site, root)
        into = grouped.get(key)
        if into is None:
            grouped[key] = dict(site, findings=list(site["findings"]))
        else:
            into["created"] = into["created"] + site["created"]
            into["findings"] = sorted_findings([*into["findings"], *site["findings"]])
    return grouped


class Baseline:
    """The known sites of one baseline file, by identity, with the findings each had."""

    def __init__(self, path: str, root: str, entries: dict[Identity, frozenset[str]]) -> None:
        self.path = path
        self.root = root
        self.entries = entries
        #: Identities looked up at run time (one linecache read per site, once).
        self._seen: dict[tuple[Any, ...], Optional[frozenset[str]]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def findings_of(self, site: dict[str, Any]) -> Optional[frozenset[str]]:
        """The findings the baseline knew ``site`` with, or None when it is new."""
        return self.entries.get(identity(site, self.root))

    def knows(self, site: dict[str, Any]) -> bool:
        """Known: in the baseline, and no finding the baseline entry did not have."""
        known = self.findings_of(site)
        return known is not None and set(site["findings"]) <= known

    def knows_churn_at(
        self,
        frame: tuple[str, int, str],
        creator: tuple[str, int, str],
    ) -> bool:
        """Whether churn at this live site (the policy's question) is known already.

        Read at the threshold only, so reading the source lines here costs
        nothing on the hot path.
        """
        key = (*frame, *creator)
        if key not in self._seen:
            site = {
                "file": _absolute(frame[0]),
                "line": frame[1],
                "function": frame[2],
                "code": source_line(frame[0], frame[1]),
                "creator": {
                    "file": _absolute(creator[0]),
                    "line": creator[1],
                    "function": creator[2],
                    "code": source_line(creator[0], creator[1]),
                },
            }
            self._seen[key] = self.findings_of(site)
        known = self._seen[key]
        return known is not None and "churn" in known

    def annotate(self, report: Report) -> Report:
        """``report`` with each site's ``known`` and ``baseline_findings`` set, and a summary."""
        data = report.to_dict()
        known = 0
        for site in data["sites"]:
            found = self.findings_of(site)
            site["baseline_findings"] = None if found is None else sorted_findings(found)
            site["known"] = found is not None and set(site["findings"]) <= found
            known += site["known"]
        data["baseline"] = {"file": self.path, "entries": len(self.entries), "known": known}
        return Report(data)


def sorted_findings(findings: Iterable[str]) -> list[str]:
    """Finding names in the schema's order."""
    names = set(findings)
    return [f for f in FINDINGS if f in names] + sorted(names - set(FINDINGS))


def _absolute(path: str) -> str:
    return path if path.startswith("<") or os.path.isabs(path) else os.path.abspath(path)


source_line = source_code


# -- files ---------------------------------------------------------------------


def build(reports: Report, path: str) -> dict[str, Any]:
    """The baseline file for the (merged) ``reports``, its paths relative to ``path``'s project."""
    root = project_root(os.path.dirname(os.path.abspath(path)))
    entries = []
    for site in _group(reports.sites, root).values():
        creator = site.get("creator") or None
        other = creator and (creator.get("file"), creator.get("line")) != (
            site["file"],
            site["line"],
        )
        entries.append(
            {
                "file": relative(site["file"], root),
                "line": site["line"],
                "function": site["function"],
                "code": normalize(site.get("code")),
                "creator": (
                    {
                        "file": relative(creator["file"], root),
                        "line": creator.get("line"),
                        "function": creator.get("function"),
                        "code": normalize(creator.get("code") or site.get("creator_code")),
                    }
                    if other and creator
                    else None
                ),
                "findings": list(site["findings"]),
                "created": site["created"],
            }
        )
    entries.sort(key=lambda e: (e["file"], e["function"], e["line"]))
    return {
        KIND: FORMAT,
        "tool": {"name": "executor_guard", "version": __version__},
        "note": (
            "Call sites known to executor_guard: they neither act nor fail --fail-on unless "
            "they get a new finding. Rewrite with: executor-guard report --write-baseline"
        ),
        "sites": entries,
    }


def write(reports: Report, path: str) -> dict[str, Any]:
    """Write the baseline for ``reports`` to ``path`` (atomically); return what was written."""
    from ._report import write_atomically

    data = build(reports, path)
    # A baseline is committed and shared: readable like any project file.
    write_atomically(path, json.dumps(data, indent=2) + "\n", mode=0o644)
    return data


def load(path: str) -> Baseline:
    """Read a baseline file, or a report used as one. Raises :class:`ReportFileError`."""
    from ._report import read_text, validate

    text = read_text(path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReportFileError(path, f"not valid JSON ({exc})") from None
    root = project_root(os.path.dirname(os.path.abspath(path)))
    entries: dict[Identity, frozenset[str]] = {}
    if isinstance(data, dict) and KIND in data:
        if data[KIND] != FORMAT:
            raise ReportFileError(path, f"unknown baseline format {data[KIND]!r}")
        sites = data.get("sites")
        if not isinstance(sites, list):
            raise ReportFileError(path, "malformed baseline: 'sites' missing or not a list")
        for index, entry in enumerate(sites):
            problem = _entry_problem(entry)
            if problem is not None:
                raise ReportFileError(path, f"malformed baseline: sites[{index}]: {problem}")
            key = identity(entry, root)
            entries[key] = entries.get(key, frozenset()) | frozenset(entry["findings"])
    else:  # a report used as a baseline
        report = Report(validate(data, path))
        for key, site in _group(report.sites, root).items():
            entries[key] = frozenset(site["findings"])
    return Baseline(path, root, entries)


def _entry_problem(entry: object) -> Optional[str]:
    if not isinstance(entry, dict):
        return "not an object"
    for name, kind in (("file", str), ("function", str)):
        if not isinstance(entry.get(name), kind):
            return f"{name!r} missing or not a {kind.__name__}"
    findings = entry.get("findings")
    if not isinstance(findings, list) or not all(isinstance(f, str) for f in findings):
        return "'findings' missing or not a list of names"
    return None


_CACHE: dict[tuple[str, float], Baseline] = {}


def cached(path: str) -> Baseline:
    """:func:`load`, once per file version: the policy asks at each site's threshold."""
    absolute = os.path.abspath(os.path.expanduser(path))
    try:
        stamp = os.stat(absolute).st_mtime
    except OSError:
        stamp = -1.0
    key = (absolute, stamp)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = load(path)  # errors name the file as the user did
    return found


# -- diff ----------------------------------------------------------------------


def _summary(site: dict[str, Any], root: str) -> dict[str, Any]:
    return {
        "site": f"{relative(site['file'], root)}:{site['line']} in {site['function']}",
        "file": site["file"],
        "line": site["line"],
        "function": site["function"],
        "created": site["created"],
        "peak_live": site.get("peak_live", 0),
        "findings": list(site["findings"]),
    }


def diff(before: Report, after: Report, root: str) -> dict[str, Any]:
    """Sites gone, new, better, worse and unchanged from ``before`` to ``after``.

    *Worse*: a site in both with a finding it did not have; *better*: one that
    lost a finding and gained none. ``worse`` at the top says whether AFTER is
    worse at each ``--fail-on`` level: a new site with findings, or a new
    finding at a site, of that level.
    """
    old = _group(before.sites, root)
    new = _group(after.sites, root)
    result: dict[str, Any] = {"gone": [], "new": [], "better": [], "worse": [], "unchanged": []}
    for key, site in old.items():
        if key not in new:
            result["gone"].append(_summary(site, root))
    for key, site in new.items():
        previous = old.get(key)
        if previous is None:
            result["new"].append(_summary(site, root))
            continue
        entry = _summary(site, root)
        entry["before"] = {
            "line": previous["line"],
            "created": previous["created"],
            "peak_live": previous.get("peak_live", 0),
            "findings": list(previous["findings"]),
        }
        gained = [f for f in site["findings"] if f not in previous["findings"]]
        lost = [f for f in previous["findings"] if f not in site["findings"]]
        entry["gained"], entry["lost"] = gained, lost
        kind = "worse" if gained else "better" if lost else "unchanged"
        result[kind].append(entry)
    churn = any("churn" in s["findings"] for s in result["new"]) or any(
        "churn" in s["gained"] for s in result["worse"]
    )
    anything = any(s["findings"] for s in result["new"]) or bool(result["worse"])
    result["worse_at"] = {"churn": churn, "any": anything}
    return result


def diff_totals(report: Report) -> dict[str, Any]:
    """The figures a diff heads each side with."""
    sites = report.sites
    return {
        "pools": sum(s["created"] for s in sites),
        "sites": len(sites),
        "sites_with_findings": sum(1 for s in sites if s["findings"]),
        "peak_live": max((s.get("peak_live", 0) for s in sites), default=0),
    }


def diff_report(before: Report, after: Report, paths: Sequence[str], root: str) -> dict[str, Any]:
    """The whole ``--diff`` document (its JSON form)."""
    return {
        "before": {"file": paths[0], **diff_totals(before)},
        "after": {"file": paths[1], **diff_totals(after)},
        **diff(before, after, root),
    }
