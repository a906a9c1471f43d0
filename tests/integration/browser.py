"""Headless Chromium driven over the DevTools protocol on a pipe: no driver, no dependency.

``Browser(path).open(url)`` loads a page; ``evaluate(js)`` runs JavaScript in it
and returns the value; ``screenshot()`` returns PNG bytes. Chromium is started
with ``--remote-debugging-pipe``: it reads commands on fd 3 and writes answers
on fd 4, one JSON message per NUL-terminated chunk.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Optional

#: The flags this machine's Chromium needs to start quickly and offline.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)


def _high(fd: int) -> int:
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One Chromium process and one page in it."""

    def __init__(self, executable: str, width: int = 1000, height: int = 900) -> None:
        self.profile = tempfile.mkdtemp(prefix="eg-chromium-")
        to_chrome_read, self._write = os.pipe()
        self._read, from_chrome_write = os.pipe()
        # Out of the way of 3 and 4, so the dup2 calls below cannot clobber them.
        to_chrome_read, from_chrome_write = (
            _high(to_chrome_read),
            _high(from_chrome_write),
        )
        # Chromium expects the pipe on fds 3 (its input) and 4 (its output).
        self.process = subprocess.Popen(
            [
                executable,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=lambda: (os.dup2(to_chrome_read, 3), os.dup2(from_chrome_write, 4)),
        )
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        self._next = 0
        self._buffer = b""
        self.session: Optional[str] = None

    def _send(
        self, method: str, params: Optional[dict[str, Any]] = None, *, session: bool = True
    ) -> Any:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session and self.session is not None:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._receive()
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        result: dict[str, Any] = json.loads(message)
        return result

    def open(self, url: str, timeout: float = 30, *, javascript: bool = True) -> None:
        target = self._send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self._send(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            session=False,
        )
        self.session = attached["sessionId"]
        self._send("Page.enable")
        if not javascript:
            self._send("Emulation.setScriptExecutionDisabled", {"value": True})
        self._send("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        result = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        data = self._send("Page.captureScreenshot", {"format": "png"})["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        try:
            self._send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
