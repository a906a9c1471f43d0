"""Interpreter start-up benchmarks (target 4): what merely having executor_guard installed costs.

a. **Installed, not activated** — ``python -c pass`` in the venv that has
   executor_guard (and psutil, structlog) installed, with ``EXECUTOR_GUARD``
   unset, against ``python -c pass`` in a venv made the same way without the
   package: at most 1.01×. Whatever executor_guard puts on the start-up path
   (its ``.pth`` file, the editable-install path entry) must be nearly free for
   every process that does not ask for the guard. A third venv, ``control``
   (the bare one plus a ``.pth`` file holding only a comment), separates what
   executor_guard costs from what processing *any* ``.pth`` file costs.
b. **Activated from the environment** — ``EXECUTOR_GUARD=log python -c pass``
   against ``python -c "import concurrent.futures"`` in the same venv: at most
   20 ms more. A program that uses pools imports ``concurrent.futures`` anyway,
   so that import is the baseline; the budget covers executor_guard's import
   and install. Activation defers the patching until ``concurrent.futures`` is
   imported, so the run that pays everything —
   ``EXECUTOR_GUARD=log python -c "import concurrent.futures"`` — is measured
   too and reported next to it. Measured only when environment
   activation exists (``import executor_guard._startup`` succeeds and
   ``EXECUTOR_GUARD=log`` really installs the guard); otherwise reported as not
   available.

i. **Installed, not activated, in instructions** (reported) — the same
   ``python -c pass`` in the guarded, bare and control venvs counted by
   valgrind (a fixed hash seed, so the counts repeat exactly), plus the control
   venv with its ``.pth`` holding only ``import os``: the least a ``.pth``
   that runs any code at all costs, since ``site`` compiles and runs each such
   line (twice in a venv). Noise-free figures for what (a) measures in time.

Method: the commands take turns run by run, the order rotating every round,
each started with ``os.posix_spawn`` and timed to its exit (the spawn overhead
is the same for all); the verdict uses the median of the per-round ratios (a)
or the difference of the medians (b). When ``hyperfine`` is installed its own
(sequential, not interleaved) measurement of (a) is recorded as a cross-check.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Optional

import _common

ENV_PREFIX = "EXECUTOR_GUARD"

#: The control venv's inert ``.pth`` (run.py writes it).
CONTROL_PTH = "_benchmark_control.pth"


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without ``EXECUTOR_GUARD*`` variables, plus ``extra``.

    ``PYTHONDONTWRITEBYTECODE`` is dropped too: measured processes load ``.pyc``
    files as on a real installation instead of compiling from source.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(ENV_PREFIX) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(extra)
    return env


def spawn_time(argv: list[str], env: dict[str, str]) -> float:
    """Wall time from spawning ``argv`` to reaping it; the command must exit 0."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2),
        ]
        start = _common.clock()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        elapsed = _common.clock() - start
    finally:
        os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} exited with status {status}")
    return elapsed


def rotated_runs(
    commands: list[tuple[list[str], dict[str, str]]], runs: int, warmup: int = 10
) -> list[list[float]]:
    """``runs`` start-up times of each command, the order rotating every round."""
    for _ in range(warmup):
        for command in commands:
            spawn_time(*command)
    times: list[list[float]] = [[] for _ in commands]
    n = len(commands)
    for index in range(runs):
        for k in range(n):
            which = (index + k) % n
            times[which].append(spawn_time(*commands[which]))
    return times


def hyperfine(commands: list[str], env: dict[str, str], runs: int) -> Optional[dict[str, Any]]:
    """Medians (s) of ``commands`` as measured by hyperfine, or None when it is missing."""
    exe = shutil.which("hyperfine")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "hyperfine.json")
        subprocess.run(
            [exe, "-N", "--warmup", "10", "--runs", str(runs), "--export-json", out, *commands],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with open(out, encoding="utf-8") as handle:
            data = json.load(handle)
    medians = [r["median"] for r in data["results"]]
    means = [r["mean"] for r in data["results"]]
    return {
        "commands": commands,
        "median_s": medians,
        "mean_s": means,
        "ratio_median": medians[0] / medians[1],
        "version": subprocess.run(
            [exe, "--version"], capture_output=True, text=True
        ).stdout.strip(),
    }


def installed_not_active(
    bare: str, control: Optional[str], runs: int, limit: float = 1.01
) -> dict[str, Any]:
    """Target 4a: ``python -c pass`` with the package installed vs a venv without it.

    With ``control`` (a venv like ``bare`` plus one ``.pth`` file that does
    nothing), the three interpreters rotate, and the guarded venv is also
    compared with the control: what executor_guard costs beyond what *any*
    ``.pth`` file costs (on 3.12+ a venv has none by default, and the first one
    processed makes ``site`` import ``encodings.utf_8_sig``).
    """
    _common.progress(f"start-up, installed but EXECUTOR_GUARD unset: {runs} rotating rounds")
    env = clean_env()
    guarded_cmd = [sys.executable, "-c", "pass"]
    bare_cmd = [bare, "-c", "pass"]
    commands = [(guarded_cmd, env), (bare_cmd, env)]
    if control:
        commands.append(([control, "-c", "pass"], env))
    times = rotated_runs(commands, runs)
    g_times, u_times = times[0], times[1]
    stats = _common.ratios(g_times, u_times)
    notes = []
    control_stats: Optional[dict[str, float]] = None
    if control:
        control_stats = _common.ratios(g_times, times[2])
        dummy = _common.ratios(times[2], u_times)
        notes.append(
            f"vs a venv whose only extra is an inert .pth: {control_stats['ratio']:.3f}× "
            f"(that inert .pth alone: {dummy['ratio']:.3f}× of bare)"
        )
    cross = hyperfine([" ".join(guarded_cmd), " ".join(bare_cmd)], env, runs)
    if cross is not None:
        version = cross["version"].split()[-1]
        notes.append(f"hyperfine {version} (sequential runs): {cross['ratio_median']:.3f}×")
    notes.append("site-packages .pth files: " + pth_files(sys.executable))
    g_med, u_med = statistics.median(g_times), statistics.median(u_times)
    return _common.result(
        "startup_installed",
        "Start-up, package installed, EXECUTOR_GUARD unset: python -c pass",
        guarded=_common.fmt_time(g_med),
        unguarded=_common.fmt_time(u_med) + " (venv without the package)",
        value=stats["ratio"],
        value_text=f"{stats['ratio']:.3f}× (min {stats['ratio_min']:.3f}×)",
        limit_text=f"≤ {limit:.2f}×",
        passed=stats["ratio"] <= limit,
        note="; ".join(notes),
        detail={
            **stats,
            "runs": runs,
            "guarded_median_s": g_med,
            "unguarded_median_s": u_med,
            "control": control_stats,
            "control_median_s": statistics.median(times[2]) if control else None,
            "hyperfine": cross,
            "guarded_runs_s": g_times,
            "unguarded_runs_s": u_times,
        },
    )


def instructions(python: str, env: dict[str, str]) -> int:
    """Machine instructions that ``python -c pass`` executes, counted by valgrind."""
    return _common.cachegrind([python, "-c", "pass"], env)["I"]


def installed_instructions(bare: str, control: Optional[str]) -> dict[str, Any]:
    """Target 4i (reported): target 4a counted in instructions, with the floor of any hook."""
    title = "Start-up, package installed, EXECUTOR_GUARD unset, in instructions (valgrind)"
    if shutil.which("valgrind") is None:
        return _common.result(
            "startup_instructions",
            title,
            guarded="—",
            unguarded="—",
            value=None,
            value_text="not available (no valgrind)",
            limit_text="reported (target 4a is ≤ 1.01× in time)",
            passed=None,
        )
    _common.progress("startup_instructions: valgrind, python -c pass in each venv")
    env = clean_env(PYTHONHASHSEED="0")
    guarded, unguarded = instructions(sys.executable, env), instructions(bare, env)
    ratio = guarded / unguarded
    notes, detail = [], {"guarded": guarded, "bare": unguarded}
    if control:
        inert = instructions(control, env)
        site_packages = subprocess.run(
            [control, "-c", "import site; print(site.getsitepackages()[0])"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # The control's one .pth, holding "import os" for one count, then as it was.
        control_pth = os.path.join(site_packages, CONTROL_PTH)
        with open(control_pth, encoding="utf-8") as handle:
            inert_text = handle.read()
        try:
            with open(control_pth, "w", encoding="utf-8") as handle:
                handle.write("import os\n")
            floor = instructions(control, env)
        finally:
            with open(control_pth, "w", encoding="utf-8") as handle:
                handle.write(inert_text)
        detail.update(inert_pth=inert, import_os_pth=floor)
        notes.append(
            f"an inert .pth alone: {inert / unguarded:.4f}×; a .pth holding only "
            f"'import os' (the least any start-up hook costs): {floor / unguarded:.4f}×; "
            f"executor_guard's over that floor: {guarded / floor:.4f}×"
        )
    return _common.result(
        "startup_instructions",
        title,
        guarded=f"{guarded:,} instructions",
        unguarded=f"{unguarded:,} instructions (venv without the package)",
        value=ratio,
        value_text=f"{ratio:.4f}× (+{guarded - unguarded:,} instructions)",
        limit_text="reported (target 4a is ≤ 1.01× in time)",
        passed=None,
        note="; ".join(notes),
        detail=detail,
    )


def pth_files(python: str) -> str:
    """The ``.pth`` files in ``python``'s site-packages, comma-separated."""
    code = (
        "import site, os; d = site.getsitepackages()[0]; "
        "print(', '.join(sorted(f for f in os.listdir(d) if f.endswith('.pth'))) or 'none')"
    )
    return subprocess.run(
        [python, "-c", code], env=clean_env(), capture_output=True, text=True
    ).stdout.strip()


def activation_available() -> tuple[bool, str]:
    """Whether ``EXECUTOR_GUARD=log`` activates the guard at interpreter start here."""
    probe = subprocess.run(
        [sys.executable, "-c", "import executor_guard._startup"],
        env=clean_env(),
        capture_output=True,
    )
    if probe.returncode != 0:
        return False, "environment activation not available: executor_guard._startup is missing"
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; m = sys.modules.get('executor_guard'); "
            "sys.exit(0 if m is not None and m.is_installed() else 1)",
        ],
        env=clean_env(EXECUTOR_GUARD="log"),
        capture_output=True,
    )
    if check.returncode != 0:
        return False, (
            "environment activation not available: executor_guard._startup exists but "
            "EXECUTOR_GUARD=log did not install the guard at start-up in this venv"
        )
    return True, ""


def activated(runs: int, limit_ms: float = 20.0) -> dict[str, Any]:
    """Target 4b: ``EXECUTOR_GUARD=log python -c pass`` vs ``import concurrent.futures``."""
    title = "Start-up, EXECUTOR_GUARD=log: python -c pass vs python -c 'import concurrent.futures'"
    available, why = activation_available()
    if not available:
        _common.progress(why)
        return _common.result(
            "startup_activated",
            title,
            guarded="n/a",
            unguarded="n/a",
            value=None,
            value_text="not available",
            limit_text=f"≤ +{limit_ms:.0f} ms",
            passed=None,
            note=why,
        )
    _common.progress(f"start-up, EXECUTOR_GUARD=log: {runs} rotating rounds")
    import_cf = "import concurrent.futures"
    guarded_cmd = ([sys.executable, "-c", "pass"], clean_env(EXECUTOR_GUARD="log"))
    baseline_cmd = ([sys.executable, "-c", import_cf], clean_env())
    patched_cmd = ([sys.executable, "-c", import_cf], clean_env(EXECUTOR_GUARD="log"))
    g_times, u_times, p_times = rotated_runs([guarded_cmd, baseline_cmd, patched_cmd], runs)
    g_med, u_med, p_med = (statistics.median(t) for t in (g_times, u_times, p_times))
    added_ms = (g_med - u_med) * 1e3
    per_pair_ms = statistics.median(g - u for g, u in zip(g_times, u_times)) * 1e3
    patched_ms = (p_med - u_med) * 1e3
    note = (
        f"activation with the patching included — EXECUTOR_GUARD=log python -c '{import_cf}' "
        f"({_common.fmt_time(p_med)}): {patched_ms:+.1f} ms over the same without the variable"
    )
    return _common.result(
        "startup_activated",
        title,
        guarded=_common.fmt_time(g_med),
        unguarded=_common.fmt_time(u_med) + f" (python -c '{import_cf}')",
        value=added_ms,
        value_text=f"{added_ms:+.1f} ms (median per pair {per_pair_ms:+.1f} ms)",
        limit_text=f"≤ +{limit_ms:.0f} ms",
        passed=added_ms <= limit_ms,
        note=note,
        detail={
            "runs": runs,
            "guarded_median_s": g_med,
            "baseline_median_s": u_med,
            "patched_median_s": p_med,
            "added_ms": added_ms,
            "patched_added_ms": patched_ms,
            "median_pair_difference_ms": per_pair_ms,
            "min_difference_ms": (min(g_times) - min(u_times)) * 1e3,
            "guarded_runs_s": g_times,
            "baseline_runs_s": u_times,
            "patched_runs_s": p_times,
        },
    )


def main() -> None:
    """Run both start-up benchmarks and emit their JSON."""
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--bare", required=True, help="python of a venv WITHOUT executor_guard")
    p.add_argument("--control", help="python of a venv like --bare plus one inert .pth file")
    args = p.parse_args()
    runs = 100 if args.quick else 300
    results = [
        installed_not_active(args.bare, args.control, runs),
        installed_instructions(args.bare, args.control),
        activated(runs),
    ]
    _common.emit("bench_startup", results, args.out)


if __name__ == "__main__":
    main()
