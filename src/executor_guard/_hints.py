"""What to do about a site with findings: one sentence chosen from its evidence.

A report names a line; the user's next step depends on *why* that line makes
pools: a library object built per call, ``asyncio.run()`` per call, a pool per
thread, a process pool per batch, or how the pools were shut down. The rules
here read a site's figures only (never source, never arguments), so they give
the same hint for a site in a log event, a warning, a report made in-process
and one loaded from a file. Nothing here runs on the hot path: the policy asks
at a threshold crossing, the report when it is made.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~10 ms)

if TYPE_CHECKING:
    from typing import Any, Optional

#: Distinct thread names (each with at most one or two pools) from which a
#: site reads as "a pool per thread" rather than many pools on a few threads.
PER_THREAD_MIN = 3

#: Library top-level packages, and the object of theirs that owns the pools
#: they build: what the user should create once and reuse.
_LIBRARY_OBJECTS: dict[str, str] = {
    "boto3": "boto3 client (and its S3 TransferManager)",
    "botocore": "boto3/botocore client",
    "s3transfer": "s3transfer TransferManager (or the boto3 client that owns it)",
    "requests": "requests Session",
    "requests_futures": "FuturesSession",
    "httpx": "httpx Client",
    "urllib3": "urllib3 PoolManager",
    "aiohttp": "aiohttp ClientSession",
    "apscheduler": "scheduler (and its executors)",
    "google": "Google Cloud client",
    "azure": "Azure SDK client",
    "elasticsearch": "Elasticsearch client",
    "kafka": "Kafka producer or consumer",
    "grpc": "gRPC server or channel",
    "dask": "Dask client",
}


def _parts(path: str) -> list[str]:
    return path.replace("\\", "/").split("/")


def library_path(path: str) -> Optional[str]:
    """``path`` from its package root when it is library or stdlib code, else None.

    ``.../site-packages/flask/app.py`` is ``flask/app.py`` and
    ``.../lib/python3.13/asyncio/base_events.py`` is ``asyncio/base_events.py``.
    Read from the path's text alone, so a report from another machine (another
    prefix, another Python) shortens the same way.
    """
    parts = _parts(path)
    for index in range(len(parts) - 2, -1, -1):
        part = parts[index]
        if part in ("site-packages", "dist-packages"):
            return "/".join(parts[index + 1 :])
    for index in range(len(parts) - 2, 0, -1):
        part = parts[index]
        if (
            part.startswith("python")
            and part[6:].replace(".", "").isdigit()
            and parts[index - 1] in ("lib", "lib64", "Lib")
        ):
            return "/".join(parts[index + 1 :])
    if len(parts) > 1 and parts[-2] == "Lib":  # a Windows stdlib: Python3x\Lib\x.py
        return parts[-1]
    return None


def library_name(path: str) -> Optional[str]:
    """The top-level package (or stdlib module) a library path belongs to."""
    short = library_path(path)
    if short is None:
        return None
    head = short.split("/")[0]
    return head[:-3] if head.endswith(".py") else head


def _frame(frame: Any) -> Optional[tuple[str, int, str]]:
    """A frame as ``(file, line, function)``: from a view's tuple or a report's object."""
    if isinstance(frame, dict):
        file, line, function = frame.get("file"), frame.get("line"), frame.get("function")
        if isinstance(file, str) and isinstance(line, int):
            return file, line, str(function)
        return None
    if isinstance(frame, (tuple, list)) and len(frame) == 3:
        return str(frame[0]), int(frame[1]), str(frame[2])
    return None


def library_creator(site: dict[str, Any]) -> Optional[tuple[str, int, str]]:
    """The library frame that built the site's pools, when that is not the site's own line."""
    creator = _frame(site.get("creator"))
    if creator is None or (creator[0], creator[1]) == (site.get("file"), site.get("line")):
        return None
    return creator


def _dominant(table: dict[str, int]) -> Optional[str]:
    counted = {k: v for k, v in table.items() if isinstance(v, int) and v > 0}
    if not counted:
        return None
    return max(counted, key=lambda name: counted[name])


def per_thread(site: dict[str, Any]) -> bool:
    """Whether the site's pools were each made on a thread of their own."""
    from ._registry import OTHER

    threads: dict[str, int] = site.get("threads") or {}
    named = {k: v for k, v in threads.items() if k != OTHER}
    return len(named) >= PER_THREAD_MIN and max(named.values()) <= 2


def _where(creator: tuple[str, int, str]) -> str:
    short = library_path(creator[0]) or creator[0]
    return f"{short}:{creator[1]}"


def _library_hint(site: dict[str, Any], creator: tuple[str, int, str]) -> str:
    file = creator[0]
    short = library_path(file) or file
    name = library_name(file) or ""
    if short.startswith("asyncio/") and "base_events" in short:
        return (
            "asyncio.run() (or a new event loop) per call makes a new default executor "
            "each time: run the calls on one loop (asyncio.Runner, or one asyncio.run "
            "around all of them), or pass your own long-lived executor to "
            "loop.run_in_executor"
        )
    if name == "tqdm":
        cls = _dominant(site.get("classes") or {}) or "ThreadPoolExecutor"
        return (
            "tqdm's thread_map()/process_map() builds a new pool on every call: create one "
            f"{cls} for the program and wrap pool.map(...) in tqdm(...) instead"
        )
    owner = _LIBRARY_OBJECTS.get(name)
    if owner is not None:
        return (
            f"the pools are built inside {name} ({_where(creator)}) once per call from your "
            f"code: create the {owner} once and reuse it across calls"
        )
    label = name or short
    return (
        f"the pools are built inside {label} ({_where(creator)}) once per call from your "
        f"code: create the {label} object that owns them (its client, session, manager or "
        "scheduler) once and reuse it across calls"
    )


def hint(site: dict[str, Any], found: list[str]) -> Optional[str]:
    """One sentence on what to do about ``site`` (a registry view or a report's site).

    None for a site without findings. The rules go from the most specific
    evidence to the least: who built the pools, what kind of pool, which
    threads, then how the pools ended.
    """
    if not found:
        return None
    shutdown: dict[str, int] = site.get("shutdown") or {}
    if "churn" not in found:
        if "never_shutdown" in found:
            return (
                "a pool from here was garbage-collected without shutdown: shut it down when "
                "its work is done (a `with` block, or shutdown() at exit)"
            )
        return (
            "a pool from here was shut down with wait=False while its work was still "
            "pending: that work keeps threads busy after shutdown returns; call "
            "shutdown(wait=True) when the work must finish, or keep the pool until it does"
        )
    creator = library_creator(site)
    if creator is not None and library_name(creator[0]) is not None:
        return _library_hint(site, creator)
    classes: dict[str, int] = site.get("classes") or {}
    if _dominant(classes) == "ProcessPoolExecutor":
        return (
            "a process pool per batch starts (and imports into) new worker processes each "
            "time: keep one ProcessPoolExecutor for the program's life and submit every "
            "batch to it"
        )
    if per_thread(site):
        return (
            "each pool is made on a thread of its own (one per thread, or per request "
            "thread): share one pool across threads instead (executors are thread-safe), "
            "created once at start-up"
        )
    ended = {mode: n for mode, n in shutdown.items() if mode != "open"}
    mode = _dominant(ended) or _dominant(shutdown)
    if mode == "never":
        return (
            "these pools are never shut down and are left to the garbage collector: create "
            "one pool, reuse it for every call, and shut it down once at exit"
        )
    if mode == "nowait":
        return (
            "a pool per call shut down with wait=False: hoist one pool out of the call "
            "(module level, or on the object that owns the calls), reuse it, and shut it "
            "down once at exit"
        )
    if mode in ("context", "wait"):
        how = "a `with` pool" if mode == "context" else "a pool created and shut down"
        return (
            f"{how} per call pays thread or process start-up on every call: keep one "
            "long-lived pool and submit to it, or map the whole batch on it at once"
        )
    return "create one pool and reuse it instead of one per call, and shut it down once at exit"
