"""Run executor_guard's benchmarks on every available CPython and write RESULTS.md.

Usage (from anywhere; standard library only, any Python ≥ 3.9)::

    python benchmarks/run.py                       # every CPython 3.9-3.13 pyenv has
    python benchmarks/run.py --pythons 3.11,3.13   # just these
    python benchmarks/run.py --quick               # fewer rounds, 100,000 creations for 5a

For each Python it makes (or reuses) three venvs under ``.benchmarks/venvs/X.Y/``
(git-ignored): ``guarded``, with this repository installed as a wheel (psutil
and structlog come as dependencies; reinstalled every run so the start-up
``.pth`` matches pyproject.toml), ``bare``, made the same way but without the
package — the start-up baseline — and ``control``, ``bare`` plus one inert
``.pth`` file. It runs the benchmark scripts
with the ``guarded`` venv's interpreter, keeps their JSON under
``.benchmarks/results/``, profiles the hot path with cProfile where a hot-path
target was missed, and renders ``benchmarks/RESULTS.md``. The exit status is 0
even when targets are missed (the benchmarks report; they do not gate), 1 when
a benchmark could not run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any, Optional

from bench_startup import CONTROL_PTH

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORK = os.path.join(REPO, ".benchmarks")
VENVS = os.path.join(WORK, "venvs")
RESULTS_DIR = os.path.join(WORK, "results")
MINORS = ("3.9", "3.10", "3.11", "3.12", "3.13")

#: Benchmark scripts in the order they run (the slow, noisy whole-program one last).
SCRIPTS = (
    "bench_micro",
    "bench_instructions",
    "bench_memory",
    "bench_startup",
    "bench_metrics",
    "bench_workload",
)

#: RESULTS.md sections: result key -> (section title, what the target says).
TARGETS: dict[str, tuple[str, str]] = {
    "lifecycle": (
        "1. Lifecycle: `ThreadPoolExecutor(1)` + `submit(int)` + `shutdown()`",
        "guarded ÷ unguarded ≤ 1.05× (stated for 3.11 and 3.13; judged on every Python)",
    ),
    "tight": (
        "2. Tight loop: `ThreadPoolExecutor(1)` + `shutdown()`, no task",
        "guarded ÷ unguarded ≤ 2.0×",
    ),
    "tight_instructions": (
        "2i. Tight loop, instructions per pool (valgrind)",
        "reported next to target 2: machine instructions counted by valgrind, guarded ÷ "
        "unguarded; a noise-free proxy for time (stalls and branch misses are not counted)",
    ),
    "cold_misses": (
        "2c. Tight loop with evicted caches, last-level misses per pool (cachegrind)",
        "reported next to target 1: the tight loop with the caches evicted before each pool "
        "(as a thread start does), cachegrind's simulated last-level misses, guarded ÷ unguarded",
    ),
    "submit": (
        "3. `submit(int)` on a long-lived pool created under the guard",
        "guarded ÷ unguarded ≤ 1.02×",
    ),
    "startup_installed": (
        "4a. Start-up with executor_guard installed, `EXECUTOR_GUARD` unset",
        "`python -c pass` ≤ 1.01× of the same in a venv without the package",
    ),
    "startup_instructions": (
        "4i. Start-up with executor_guard installed, `EXECUTOR_GUARD` unset, in instructions "
        "(valgrind)",
        "reported next to target 4a: the instructions `python -c pass` executes, guarded venv "
        "÷ a venv without the package, with what an inert `.pth` and one that only runs "
        "`import os` cost (the least any start-up hook can)",
    ),
    "startup_activated": (
        "4b. Start-up with `EXECUTOR_GUARD=log`",
        '`python -c pass` at most 20 ms over `python -c "import concurrent.futures"`',
    ),
    "memory_growth": (
        "5a. Guard memory growth at one call site",
        "≤ 64 KiB more after 1,000,000 creations than after 10,000 (`--quick`: 100,000)",
    ),
    "memory_per_pool": (
        "5b. Guard memory per live pool",
        "≤ 256 bytes per open pool (10,000 open pools, tracemalloc totals with vs without)",
    ),
    "distinct_sites": (
        "5c. Distinct call sites are capped",
        "the registry stops at `MAX_SITES`; `totals.overflow_creations` counts the rest",
    ),
    "metrics_on_off": (
        '7. Metrics on: the tight loop with `metrics="otel"` and an SDK collecting every 100 ms',
        "on ÷ off ≤ 1.05× (each variant in its own processes, rotated; median per-round ratios)",
    ),
    "workload_guard": (
        "6a. Whole program under the launcher",
        "`python -m executor_guard -q workload.py` ÷ `python workload.py` (reported, no limit)",
    ),
    "workload_tracemalloc": (
        "6b. Whole program under tracemalloc, for scale",
        "`python -X tracemalloc=25 workload.py` ÷ `python workload.py` (reported, no limit)",
    ),
}

#: Targets whose miss triggers the cProfile run of the hot path.
HOT_PATH = ("lifecycle", "tight", "submit")


def bench_env() -> dict[str, str]:
    """The environment for benchmark processes.

    No ``EXECUTOR_GUARD*`` variable (each benchmark sets what it measures), and
    no ``PYTHONDONTWRITEBYTECODE``: a real installation has ``.pyc`` files, and
    without them every measured process would compile executor_guard from
    source (tens of milliseconds) instead of loading it.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EXECUTOR_GUARD") and k != "PYTHONDONTWRITEBYTECODE"
    }


def say(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


# -- interpreters and venvs ---------------------------------------------------------


def find_python(minor: str) -> Optional[str]:
    """The newest pyenv CPython ``minor`` (e.g. ``3.11``), else ``pythonX.Y`` on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    versions_dir = os.path.join(root, "versions")
    if os.path.isdir(versions_dir):
        pattern = re.compile(rf"^{re.escape(minor)}(\.\d+)?$")
        found = [v for v in os.listdir(versions_dir) if pattern.match(v)]
        found.sort(key=lambda v: [int(part) for part in v.split(".")])
        for version in reversed(found):
            exe = os.path.join(versions_dir, version, "bin", "python")
            if os.access(exe, os.X_OK):
                return exe
    return shutil.which(f"python{minor}")


def venv_python(venv: str) -> str:
    """The interpreter of ``venv``."""
    return os.path.join(venv, "bin", "python")


def probe(python: str, code: str) -> bool:
    """Whether ``python -c code`` exits 0."""
    done = subprocess.run([python, "-c", code], env=bench_env(), capture_output=True)
    return done.returncode == 0


def ensure_venvs(minor: str, base: str, reinstall: bool) -> tuple[str, str, str]:
    """Create or reuse the ``guarded``, ``bare`` and ``control`` venvs; return their pythons.

    ``control`` is ``bare`` plus one ``.pth`` file holding only a comment: the
    start-up benchmark uses it to tell executor_guard's cost from the cost of
    processing any ``.pth`` file at all.
    """
    guarded = os.path.join(VENVS, minor, "guarded")
    bare = os.path.join(VENVS, minor, "bare")
    control = os.path.join(VENVS, minor, "control")
    for venv in (guarded, bare, control):
        if reinstall and os.path.isdir(venv):
            shutil.rmtree(venv)
        if not os.path.exists(venv_python(venv)):
            say(f"  creating {os.path.relpath(venv, REPO)}")
            subprocess.run([base, "-m", "venv", venv], check=True)
    site_packages = subprocess.run(
        [venv_python(control), "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(site_packages, CONTROL_PTH), "w", encoding="utf-8") as handle:
        handle.write("# executor_guard benchmarks: an inert .pth file (start-up control)\n")
    # Always (re)install, as a wheel (what production has: no editable path entry
    # on sys.path), so site-packages (the package, the start-up .pth) matches the
    # source tree. pip compiles a wheel install's modules, as an installer would.
    say(f"  pip install {REPO} (wheel) into {os.path.relpath(guarded, REPO)}")
    for command in (
        # The runtime dependencies as pyproject.toml lists them (tomli before 3.11),
        # and the OpenTelemetry SDK for bench_metrics (the guard needs only the API).
        [
            "install",
            "--quiet",
            "psutil",
            "structlog",
            "tomli; python_version < '3.11'",
            "opentelemetry-api",
            "opentelemetry-sdk",
        ],
        ["install", "--quiet", "--force-reinstall", "--no-deps", REPO],
    ):
        done = subprocess.run(
            [venv_python(guarded), "-m", "pip", *command], capture_output=True, text=True
        )
        if done.returncode != 0:
            say(done.stdout + done.stderr)
            raise RuntimeError(f"pip {' '.join(command)} failed in {guarded}")
    if not probe(
        venv_python(guarded),
        "import os, executor_guard, psutil, structlog; "
        "raise SystemExit('site-packages' not in executor_guard.__file__)",
    ):
        raise RuntimeError(f"{guarded}: executor_guard is not importable from site-packages")
    if probe(venv_python(bare), "import executor_guard"):
        raise RuntimeError(f"{bare} must not have executor_guard installed")
    return venv_python(guarded), venv_python(bare), venv_python(control)


# -- running ------------------------------------------------------------------------


def run_script(python: str, script: str, out: str, quick: bool, extra: list[str]) -> dict[str, Any]:
    """Run one benchmark script with ``python``; return its JSON document."""
    argv = [python, os.path.join(HERE, f"{script}.py"), "--out", out, *extra]
    if quick:
        argv.append("--quick")
    subprocess.run(argv, env=bench_env(), check=True, cwd=REPO)
    with open(out, encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def run_python(minor: str, base: str, args: argparse.Namespace) -> dict[str, Any]:
    """All benchmarks for one Python; returns ``{"python", "results", "profiles"}``."""
    say(f"=== CPython {minor}: {base}")
    guarded, bare, control = ensure_venvs(minor, base, args.reinstall)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    results: list[dict[str, Any]] = []
    version = ""
    reused: list[str] = []
    for script in SCRIPTS:
        out = os.path.join(RESULTS_DIR, f"{minor}-{script}.json")
        if script in args.only:
            say(f"  {script}")
            extra = ["--bare", bare, "--control", control] if script == "bench_startup" else []
            document = run_script(guarded, script, out, args.quick, extra)
        elif os.path.exists(out):
            # Not selected with --only: keep the figures of the last run that made them.
            with open(out, encoding="utf-8") as handle:
                document = json.load(handle)
            when = datetime.datetime.fromtimestamp(os.path.getmtime(out)).astimezone()
            reused.append(f"{script} ({when:%Y-%m-%d %H:%M})")
        else:
            continue
        version = document["python"]
        results.extend(document["results"])
    profiles: list[dict[str, Any]] = []
    missed = [r["key"] for r in results if r["key"] in HOT_PATH and r["passed"] is False]
    if missed or args.profile:
        say(f"  profile_hot_path ({'missed: ' + ', '.join(missed) if missed else 'requested'})")
        out = os.path.join(RESULTS_DIR, f"{minor}-profile.json")
        profiles = run_script(guarded, "profile_hot_path", out, args.quick, [])["results"]
    return {
        "minor": minor,
        "python": version,
        "results": results,
        "profiles": profiles,
        "reused": reused,
    }


# -- rendering ----------------------------------------------------------------------


def verdict(result: dict[str, Any]) -> str:
    """Pass/miss cell."""
    if result["passed"] is True:
        return "pass"
    if result["passed"] is False:
        return "**MISS**"
    return "not available" if result["value"] is None else "—"


def git_description() -> str:
    """``abc1234`` (plus ``+ uncommitted changes`` when the work tree is dirty)."""
    try:
        head = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"`{head}`" + (" with uncommitted changes in src/" if dirty else "")


def render(runs: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    """RESULTS.md: a summary grid, then one table per target, then profiles of misses."""
    now = datetime.datetime.now().astimezone()
    pythons = ", ".join(run["python"] for run in runs)
    size = "**quick** (fewer rounds; 100,000 creations for 5a)" if args.quick else "full"
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{command}` on {now:%Y-%m-%d %H:%M %Z}, source {git_description()}.",
        "",
        f"- Pythons: {pythons}",
        f"- Machine: {os.cpu_count()} cores (`os.cpu_count()`), {platform.platform()}; "
        "shared and noisy, so every figure is a ratio of guarded and unguarded runs "
        "interleaved in one process or one loop (median of the per-round ratios; "
        "`min` = ratio of the fastest rounds).",
        f"- Size: {size}.",
        *[
            f"- {run['python']}: figures of {', '.join(run['reused'])} are from that earlier run "
            "(not selected with `--only` this time)."
            for run in runs
            if run["reused"]
        ],
        "- How each figure is measured: [README.md](README.md). Raw per-round figures: "
        "`.benchmarks/results/*.json` after a run.",
        "",
        "## Summary",
        "",
        "| Target | Limit | " + " | ".join(run["python"] for run in runs) + " |",
        "|---|---|" + "---|" * len(runs),
    ]
    by_key = [{r["key"]: r for r in run["results"]} for run in runs]
    for key, (title, _) in TARGETS.items():
        present = [table.get(key) for table in by_key]
        if not any(present):
            continue
        limit = next(r["limit_text"] for r in present if r)
        cells = []
        for result in present:
            if result is None:
                cells.append("not run")
            elif result["value"] is None:
                cells.append("not available")
            else:
                short = re.split(r" \(|; ", result["value_text"])[0]
                cells.append(
                    f"{short} {verdict(result)}" if result["passed"] is not None else short
                )
        lines.append(f"| {title.split(':')[0]} | {limit} | " + " | ".join(cells) + " |")
    lines.append("")

    for key, (title, target) in TARGETS.items():
        rows = [(run, table[key]) for run, table in zip(runs, by_key) if key in table]
        if not rows:
            continue
        lines += [f"## {title}", "", f"Target: {target}.", ""]
        lines += [
            "| Python | Guarded | Unguarded | Result | Target | Pass |",
            "|---|---|---|---|---|---|",
        ]
        notes = []
        for run, result in rows:
            lines.append(
                f"| {run['python']} | {result['guarded']} | {result['unguarded']} | "
                f"{result['value_text']} | {result['limit_text']} | {verdict(result)} |"
            )
            if result["note"]:
                notes.append(f"- {run['python']}: {result['note']}")
        lines += ["", *notes, ""] if notes else [""]

    profiled = [run for run in runs if run["profiles"]]
    if profiled:
        lines += [
            "## Where the guarded hot path spends its time (cProfile)",
            "",
            "Run because a hot-path target (1-3) was missed. cProfile inflates small Python "
            "functions, so read the shares as *where*, not *how much*; the ratios above come "
            "from unprofiled runs. Times are per pool, own time (`tottime`) and including "
            "callees (`cumtime`).",
            "",
        ]
        for run in profiled:
            for prof in run["profiles"]:
                shares = ", ".join(f"{name} {share:.0%}" for name, share in prof["shares"].items())
                lines += [
                    f"### {run['python']}, {prof['loop']} loop ({prof['pools']:,} pools, "
                    f"{prof['profiled_us_per_pool']:.1f} µs/pool profiled)",
                    "",
                    f"Own time by code: {shares}.",
                    "",
                    "| Function | Calls | tottime µs/pool | cumtime µs/pool | Share |",
                    "|---|---|---|---|---|",
                ]
                for row in prof["top"]:
                    lines.append(
                        f"| `{row['function']}` | {row['calls']:,} | "
                        f"{row['tottime_per_pool_us']:.2f} | {row['cumtime_per_pool_us']:.2f} | "
                        f"{row['share']:.1%} |"
                    )
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- main ---------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    """Parse options, run every requested Python, write RESULTS.md."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--pythons",
        default=",".join(MINORS),
        help="comma-separated minor versions (default: %(default)s, those found)",
    )
    p.add_argument("--quick", action="store_true", help="fewer rounds, 100,000 creations for 5a")
    p.add_argument("--reinstall", action="store_true", help="recreate the venvs")
    p.add_argument(
        "--profile", action="store_true", help="profile the hot path even if no target was missed"
    )
    p.add_argument(
        "--only",
        default=",".join(SCRIPTS),
        help="comma-separated subset of: %(default)s",
    )
    p.add_argument(
        "--output", default=os.path.join(HERE, "RESULTS.md"), help="default: %(default)s"
    )
    args = p.parse_args(argv)
    # --only "" runs nothing and re-renders RESULTS.md from the stored results.
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SCRIPTS))
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")

    runs: list[dict[str, Any]] = []
    failed: list[str] = []
    for minor in [m.strip() for m in args.pythons.split(",") if m.strip()]:
        base = find_python(minor)
        if base is None:
            say(f"=== CPython {minor}: not installed here, skipped")
            continue
        try:
            runs.append(run_python(minor, base, args))
        except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
            say(f"=== CPython {minor}: FAILED: {exc}")
            failed.append(minor)
    if not runs:
        say("no benchmark ran")
        return 1
    command = "python benchmarks/run.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    text = render(runs, args, command)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write(text)
    say(f"wrote {os.path.relpath(args.output)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
