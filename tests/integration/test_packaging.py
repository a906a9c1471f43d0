"""Packaging: without a working C compiler the install still succeeds, pure Python."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX compiler variables")


def test_a_failed_c_build_gives_a_pure_python_wheel(tmp_path: Path) -> None:
    env = dict(os.environ, CC="/bin/false")  # every compile fails
    env.pop("EXECUTOR_GUARD_BUILD_PURE", None)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    [wheel] = tmp_path.glob("executor_guard-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "executor_guard.pth" in names
    assert "executor_guard/_guard.py" in names
    assert not [n for n in names if "_speedups" in n]
