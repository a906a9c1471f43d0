"""A fresh virtual environment with the built wheel installed, for the start-up hook tests."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class WheelEnv:
    """A virtual environment holding executor_guard from its wheel, not the source tree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = str(root / "bin" / "python")

    def run(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        **kwargs: object,
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's python with only the given EXECUTOR_GUARD* variables set."""
        full = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
        full.pop("PYTHONPATH", None)
        full.update(env or {})
        return subprocess.run(
            [self.python, *args],
            cwd=cwd,
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,  # type: ignore[arg-type]
        )

    def site_packages(self) -> str:
        out = subprocess.run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()


@pytest.fixture(scope="session")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> WheelEnv:
    """Build the wheel once per session and install it into a new venv."""
    base = tmp_path_factory.mktemp("wheelenv")
    dist = base / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = dist.glob("executor_guard-*.whl")
    venv.EnvBuilder(with_pip=True).create(base / "venv")
    env = WheelEnv(base / "venv")
    install = subprocess.run(
        [env.python, "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    # Compile like an installer would, so start-up is measured with bytecode.
    subprocess.run(
        [env.python, "-m", "compileall", "-q", env.site_packages()],
        check=False,
        capture_output=True,
    )
    return env
