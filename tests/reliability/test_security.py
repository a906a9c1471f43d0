"""Reports are private and atomic, and nothing records argument values or locals."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import executor_guard

SECRET = "s3cr3t-" + "token-4f1c9e"  # assembled so the literal is not in any source line

APP = textwrap.dedent(
    """
    import os, sys
    from concurrent.futures import ThreadPoolExecutor

    def handle(password, *, api_key):
        token = password + api_key
        pool = ThreadPoolExecutor(max_workers=1)
        pool.submit(len, token)
        pool.shutdown(wait=False)

    secret = os.environ["APP_SECRET"]
    for _ in range(12):
        handle(secret[:7], api_key=secret[7:])
    """
)


@pytest.mark.parametrize("mode", ["warn", "log"])
def test_no_argument_value_or_local_variable_reaches_any_output(tmp_path: Path, mode: str) -> None:
    (tmp_path / "app.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
    env["APP_SECRET"] = SECRET
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "executor_guard",
            "--mode",
            mode,
            "--log-format",
            "json",
            "--report",
            "r.json",
            "app.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "handle" in result.stderr  # the site is reported...
    outputs = [result.stdout, result.stderr, (tmp_path / "r.json").read_text()]
    for output in outputs:  # ...but never the values
        assert SECRET not in output
        assert SECRET[:7] not in output
        assert SECRET[7:] not in output
    data = json.loads(outputs[2])
    assert data["sites"][0]["function"] == "handle"


def test_report_files_are_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    with executor_guard.guarded() as guard:
        pass
    old = os.umask(0)
    try:
        path = guard.report().write_json(str(tmp_path / "r.json"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_temporary_file_is_created_exclusively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink planted where the temporary file goes is never written through."""
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    planted = []
    real_mkstemp = tempfile.mkstemp

    def mkstemp_with_a_planted_symlink(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, name = real_mkstemp(*args, **kwargs)  # type: ignore[arg-type]
        os.close(fd)
        os.unlink(name)
        os.symlink(victim, name)  # an attacker races us to the name...
        planted.append(name)
        # ...so the exclusive create must fail rather than follow the link.
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_with_a_planted_symlink)
    with executor_guard.guarded() as guard:
        pass
    with pytest.raises(FileExistsError):
        guard.report().write_json(str(tmp_path / "r.json"))
    assert victim.read_text() == "untouched"
    assert planted
