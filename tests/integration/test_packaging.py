"""Packaging: one pure-Python wheel for any CPython 3.9+, with or without a compiler."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .conftest import ROOT


def test_the_wheel_is_pure_python_even_with_a_compiler_that_fails(tmp_path: Path) -> None:
    env = dict(os.environ, CC="/bin/false")  # nothing may need compiling
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
    assert not [n for n in names if n.endswith((".so", ".c", ".pyd"))]
