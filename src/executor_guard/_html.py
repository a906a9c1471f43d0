"""The HTML report: one self-contained page from a JSON report's data.

``render(data)`` returns the page as a string: no network, no external fonts,
scripts or styles, so it opens from a file path anywhere. Everything that
matters reads without JavaScript (the summary, the sites table, each site's
timeline and folded stacks); the small inline script only adds sorting by a
column and filtering by finding. Everything that comes from the program (file,
function and thread names, source lines, argv) is escaped.

The timeline of a site is its ``timeline`` samples (seconds since the guard
started, live pools) drawn as an inline SVG step line: a pool per event shut
down with ``wait=False`` climbs as a saw-tooth, a shared pool stays flat.
"""

from __future__ import annotations

import html
import linecache
import os
from typing import Any, Optional

from ._report import live_text, rate_text, threads_text
from ._report import short_path as _short_path

#: Sites that get a section of their own (timeline and stacks): those with
#: findings first, then the busiest, so a page for thousands of sites stays small.
MAX_SECTIONS = 200

_WIDTH, _HEIGHT, _PAD = 640, 120, 24

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d1d1f}
h1{font-size:20px;margin:0 0 4px}
.summary{margin:0 0 16px;color:#444}
table{border-collapse:collapse;width:100%;margin:8px 0 24px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f6;cursor:pointer;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.hint{width:28%;font-size:13px;color:#333}
code,.frame{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
.finding{display:inline-block;border-radius:3px;padding:0 4px;margin:1px;font-size:12px}
.churn{background:#ffd6d6}.nowait_pending{background:#ffe7c2}.never_shutdown{background:#e6dcff}
.none{color:#888}
section.site{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:0 0 16px}
section.site h2{font-size:15px;margin:0 0 4px}
.frame.app{font-weight:bold}.frame .src{color:#555;margin-left:2em;display:block}
svg .line{fill:none;stroke-width:2}svg .bad{stroke:#c0392b}svg .ok{stroke:#2e7d32}
svg .axis{stroke:#999;stroke-width:1}.note{color:#666;font-size:.85em;margin-top:0}
svg text{font-size:10px;fill:#666}
.filters label{margin-right:12px}
"""

_SCRIPT = """
(function(){
  var table=document.getElementById('sites');
  if(!table){return;}
  var body=table.tBodies[0];
  function sortBy(index,numeric){
    var rows=Array.prototype.slice.call(body.rows);
    var th=table.tHead.rows[0].cells[index];
    var down=th.getAttribute('data-dir')!=='desc';
    rows.sort(function(a,b){
      var x=a.cells[index].getAttribute('data-v'),y=b.cells[index].getAttribute('data-v');
      var c=numeric?(parseFloat(x)-parseFloat(y)):(x<y?-1:x>y?1:0);
      return down?-c:c;
    });
    th.setAttribute('data-dir',down?'desc':'asc');
    rows.forEach(function(r){body.appendChild(r);});
    table.setAttribute('data-sorted',th.getAttribute('data-key')+':'+(down?'desc':'asc'));
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
    th.addEventListener('click',function(){sortBy(i,th.getAttribute('data-numeric')==='1');});
  });
  function filter(){
    var wanted=[];
    Array.prototype.forEach.call(document.querySelectorAll('.filters input'),function(box){
      if(box.checked){wanted.push(box.value);}
    });
    Array.prototype.forEach.call(body.rows,function(row){
      var has=(row.getAttribute('data-findings')||'').split(' ');
      var show=wanted.length===0||wanted.some(function(f){return has.indexOf(f)>=0;});
      row.style.display=show?'':'none';
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('.filters input'),function(box){
    box.addEventListener('change',filter);
  });
  document.body.setAttribute('data-script','ready');
})();
"""

_FINDINGS = ("churn", "nowait_pending", "never_shutdown")


#: The directory paths are shown relative to while a page renders.
_root: list[Optional[str]] = [None]


def short_path(path: str) -> str:
    return _short_path(path, _root[0])


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render(data: dict[str, Any]) -> str:
    """The HTML page for a report dict (one process's or a merge)."""
    previous = _root[0]
    _root[0] = (data.get("process") or {}).get("cwd") or None
    try:
        return _render(data)
    finally:
        _root[0] = previous


def _render(data: dict[str, Any]) -> str:
    sites: list[dict[str, Any]] = data.get("sites", [])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>executor_guard report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>executor_guard report</h1>",
        f'<p class="summary" id="summary">{_e(_summary(data))}</p>',
    ]
    parts.extend(_processes(data))
    parts.extend(_creator_groups(sites))
    parts.append(_filters())
    parts.append(_table(sites))
    shown = _sections_shown(sites)
    for index in shown:
        parts.append(_section(sites[index], index, data.get("process") or {}))
    if len(shown) < len(sites):
        parts.append(
            f"<p>{len(sites) - len(shown)} more sites without findings are in the table only.</p>"
        )
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def _summary(data: dict[str, Any]) -> str:
    totals = data.get("totals", {})
    config = data.get("config", {})
    flagged = sum(1 for s in data.get("sites", []) if s.get("findings"))
    pools, sites = totals.get("pools", 0), totals.get("sites", 0)
    text = (
        f"{pools} pool{'' if pools == 1 else 's'} from "
        f"{sites} call site{'' if sites == 1 else 's'}; "
        f"{flagged} with findings (mode {config.get('mode')}, threshold {config.get('threshold')})"
    )
    processes = data.get("processes")
    if processes:
        text += f"; merged from {len(processes)} processes"
    return text


def _processes(data: dict[str, Any]) -> list[str]:
    processes = data.get("processes")
    if not processes:
        process = data.get("process") or {}
        argv = " ".join(str(a) for a in process.get("argv") or [])
        return [
            f'<p class="summary">process {_e(process.get("pid"))}: <code>{_e(argv)}</code>, '
            f"Python {_e(process.get('python'))}, started {_e(process.get('started_at'))}</p>"
        ]
    rows = [
        "<h2>Processes</h2>",
        '<table id="processes"><thead><tr><th>pid</th><th>argv</th><th>Python</th>'
        "<th>started</th><th>reported</th></tr></thead><tbody>",
    ]
    for process in processes:
        argv = " ".join(str(a) for a in process.get("argv") or [])
        rows.append(
            f"<tr><td>{_e(process.get('pid'))}</td><td><code>{_e(argv)}</code></td>"
            f"<td>{_e(process.get('python'))}</td><td>{_e(process.get('started_at'))}</td>"
            f"<td>{_e(process.get('reported_at'))}</td></tr>"
        )
    rows.append("</tbody></table>")
    return rows


def creator_groups(sites: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[int]]]:
    """Library lines that built pools for several application lines: ``(creator, site indexes)``.

    Each application line may stay under the threshold while the library line
    builds many pools in all: the group shows the pattern. Largest first.
    """
    groups: dict[tuple[Any, Any], list[int]] = {}
    creators: dict[tuple[Any, Any], dict[str, Any]] = {}
    for index, site in enumerate(sites):
        creator = site.get("creator")
        if not isinstance(creator, dict):
            continue
        where = (creator.get("file"), creator.get("line"))
        if where == (site.get("file"), site.get("line")):
            continue
        groups.setdefault(where, []).append(index)
        creators.setdefault(where, creator)
    found = [(creators[key], members) for key, members in groups.items() if len(members) > 1]
    found.sort(key=lambda group: -sum(int(sites[i].get("created", 0)) for i in group[1]))
    return found


def _creator_groups(sites: list[dict[str, Any]]) -> list[str]:
    groups = creator_groups(sites)
    if not groups:
        return []
    parts = [
        "<h2>Grouped by creator</h2>",
        '<table id="creators"><thead><tr><th>library line</th><th>created</th>'
        "<th>application lines</th></tr></thead><tbody>",
    ]
    for creator, members in groups:
        where = f"{short_path(str(creator.get('file')))}:{creator.get('line')}"
        total = sum(int(sites[i].get("created", 0)) for i in members)
        lines = "<br>".join(
            f'<a href="#site-{i}">{_e(_location(sites[i]))}</a> ({_e(sites[i].get("created", 0))})'
            for i in members
        )
        parts.append(
            f"<tr><td><code>{_e(where)} in {_e(creator.get('function'))}</code></td>"
            f'<td class="n">{total}</td><td>{lines}</td></tr>'
        )
    parts.append("</tbody></table>")
    return parts


def _filters() -> str:
    boxes = "".join(f'<label><input type="checkbox" value="{f}"> {f}</label>' for f in _FINDINGS)
    return f'<p class="filters">Show only sites with: {boxes}</p>'


_COLUMNS = (
    ("location", "location", False),
    ("class", "class", False),
    ("created", "created", True),
    ("rate", "rate", True),
    ("live", "live / peak", True),
    ("shutdown", "shutdown", False),
    ("findings", "findings", False),
    ("hint", "hint", False),
)


def _table(sites: list[dict[str, Any]]) -> str:
    head = "".join(
        f'<th data-key="{key}" data-numeric="{1 if numeric else 0}">{_e(label)}</th>'
        for key, label, numeric in _COLUMNS
    )
    rows = [f'<table id="sites"><thead><tr>{head}</tr></thead><tbody>']
    for index, site in enumerate(sites):
        rows.append(_row(site, index))
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _location(site: dict[str, Any]) -> str:
    return f"{short_path(str(site.get('file')))}:{site.get('line')} in {site.get('function')}"


def _dominant_class(site: dict[str, Any]) -> str:
    classes: dict[str, int] = site.get("classes") or {}
    if not classes:
        return ""
    return max(classes.items(), key=lambda item: item[1])[0]


def _badges(findings: list[str]) -> str:
    if not findings:
        return '<span class="none">none</span>'
    return "".join(f'<span class="finding {_e(f)}">{_e(f)}</span>' for f in findings)


def _live_cell(site: dict[str, Any]) -> str:
    if site.get("processes", 1) > 1:  # live counts from processes' different ends do not add up
        return f"peak {_e(site.get('peak_live', 0))} in one process"
    return f"{_e(site.get('live', 0))} / {_e(site.get('peak_live', 0))}"


def _row(site: dict[str, Any], index: int) -> str:
    findings = [str(f) for f in site.get("findings") or []]
    shutdown = site.get("shutdown") or {}
    modes = ", ".join(f"{k} {v}" for k, v in shutdown.items() if v)
    rate = site.get("rate_per_min")
    cells = [
        (_location(site), f'<a href="#site-{index}">{_e(_location(site))}</a>'),
        # A break opportunity inside long class names keeps the hint column readable.
        (
            _dominant_class(site),
            _e(_dominant_class(site)).replace("PoolExecutor", "<wbr>PoolExecutor"),
        ),
        (site.get("created", 0), _e(site.get("created", 0))),
        (rate if rate is not None else -1, _e(rate_text(site))),
        (site.get("peak_live", 0), _live_cell(site)),
        (modes, _e(modes)),
        (" ".join(findings), _badges(findings)),
        (site.get("hint") or "", _e(site.get("hint") or "")),
    ]
    classes = {2: " class=n", 3: " class=n", 4: " class=n", 7: " class=hint"}
    tds = "".join(
        f'<td{classes.get(i, "")} data-v="{_e(value)}">{shown}</td>'
        for i, (value, shown) in enumerate(cells)
    )
    return f'<tr data-findings="{_e(" ".join(findings))}">{tds}</tr>'


def _sections_shown(sites: list[dict[str, Any]]) -> list[int]:
    flagged = [i for i, s in enumerate(sites) if s.get("findings")]
    others = [i for i, s in enumerate(sites) if not s.get("findings")]
    return sorted((flagged + others)[: max(MAX_SECTIONS, len(flagged))])


def _section(site: dict[str, Any], index: int, process: dict[str, Any]) -> str:
    findings = [str(f) for f in site.get("findings") or []]
    parts = [
        f'<section class="site" id="site-{index}">',
        f"<h2>{_badges(findings)} <code>{_e(_location(site))}</code></h2>",
    ]
    creator = site.get("creator")
    if isinstance(creator, dict) and (creator.get("file"), creator.get("line")) != (
        site.get("file"),
        site.get("line"),
    ):
        where = f"{short_path(str(creator.get('file')))}:{creator.get('line')}"
        parts.append(f"<p>built by <code>{_e(where)} in {_e(creator.get('function'))}</code></p>")
    if site.get("hint"):
        parts.append(f"<p>{_e(site['hint'])}</p>")
    parts.append(_timeline_svg(site, process))
    parts.append(f"<p>{_e(live_text(site))}</p>")
    if site.get("threads"):
        parts.append(f"<p>threads: {_e(threads_text(site))}</p>")
    parts.extend(_stacks(site))
    parts.append("</section>")
    return "\n".join(parts)


def _timeline_svg(site: dict[str, Any], process: dict[str, Any]) -> str:
    """Live pools over the run: a pile-up climbs in steps, a shared pool is one flat step.

    A merged site's timeline is its busiest process's (live counts of
    processes that ran at other times do not add up sample by sample). The
    process's thread count, where the report has it, is said under the chart.
    """
    samples = [s for s in site.get("timeline") or [] if isinstance(s, list) and len(s) == 2]
    if not samples:
        return '<p class="none">no timeline recorded</p>'
    times = [float(t) for t, _ in samples]
    lives = [int(n) for _, n in samples]
    start, stop = min(times), max(times)
    span = (stop - start) or 1.0
    top = max(max(lives), 1)
    width, height, pad = _WIDTH, _HEIGHT, _PAD

    def x(t: float) -> float:
        return pad + (t - start) / span * (width - 2 * pad)

    def y(n: int) -> float:
        return height - pad - n / top * (height - 2 * pad)

    points = [f"{x(times[0]):.1f},{y(0):.1f}"]
    previous = 0
    for t, n in zip(times, lives):
        points.append(f"{x(t):.1f},{y(previous):.1f}")
        points.append(f"{x(t):.1f},{y(n):.1f}")
        previous = n
    label = f"live pools over time, peak {top}"
    tone = "line bad" if site.get("findings") else "line ok"
    notes = []
    if site.get("processes", 1) > 1:
        notes.append(f"the busiest of {site['processes']} processes")
    elif process.get("peak_threads") is not None:
        notes.append(
            f"process threads: {process.get('threads')} at the report, "
            f"peak {process['peak_threads']} seen at creations"
        )
    caption = f'<p class="note">{_e("; ".join(notes))}</p>' if notes else ""
    return (
        f'<svg class="timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">'
        f"<title>{_e(label)}</title>"
        f'<line class="axis" x1="{pad}" y1="{height - pad}" x2="{width - pad}" '
        f'y2="{height - pad}"/>'
        f'<line class="axis" x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}"/>'
        f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{top}</text>'
        f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end">0</text>'
        f'<text x="{pad}" y="{height - 6}">{start:.2f} s</text>'
        f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">{stop:.2f} s</text>'
        f'<polyline class="{tone}" points="{" ".join(points)}"/></svg>'
        f"{caption}"
    )


def _source(frame: dict[str, Any]) -> Optional[str]:
    if "source" in frame:  # as the reporting process read it: never today's file
        recorded = frame["source"]
        return recorded.strip() or None if isinstance(recorded, str) else None
    file, line = frame.get("file"), frame.get("line")
    if isinstance(file, str) and isinstance(line, int) and os.path.exists(file):
        return linecache.getline(file, line).strip() or None
    return None


def _stacks(site: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    stacks = site.get("stacks") or []
    for number, stack in enumerate(stacks):
        frames = stack.get("frames") or []
        summary = f"creation stack {number + 1} of {len(stacks)}: seen {stack.get('count')} times"
        opened = " open" if number == 0 and site.get("findings") else ""
        parts.append(f"<details{opened}><summary>{_e(summary)}</summary>")
        for frame in frames:
            app = bool(frame.get("app"))
            where = f"{short_path(str(frame.get('file')))}:{frame.get('line')}"
            text = f"{where} in {frame.get('function')}"
            source = _source(frame) if app else None
            src = f'<span class="src">{_e(source)}</span>' if source else ""
            marker = "&gt; " if app else "&nbsp;&nbsp;"
            parts.append(f'<div class="frame{" app" if app else ""}">{marker}{_e(text)}{src}</div>')
        parts.append("</details>")
    return parts
