"""Process figures for reports: threads, open file descriptors, memory.

psutil is imported here, lazily, only when a report or log event is made; any
failure gives ``None`` figures rather than an error.
"""

from __future__ import annotations

import threading
from typing import Optional

from ._diagnostics import internal_error
from ._state import STATE


def figures() -> dict[str, Optional[int]]:
    """``threads``, ``rss_bytes`` and ``fds`` of this process (None when unknown)."""
    result: dict[str, Optional[int]] = {"threads": None, "rss_bytes": None, "fds": None}
    try:
        with STATE.importing():  # report-time import: see _state
            import psutil

        process = psutil.Process()
        with process.oneshot():
            result["threads"] = process.num_threads()
            result["rss_bytes"] = process.memory_info().rss
            num_fds = getattr(process, "num_fds", None)
            if num_fds is not None:
                result["fds"] = num_fds()
            else:  # pragma: no cover - Windows
                result["fds"] = process.num_handles()
    except Exception as exc:
        internal_error("reading process figures with psutil", exc)
        result["threads"] = threading.active_count()
    return result
