"""Installed services: which frames are application code when the program is itself installed.

One fresh virtual environment per module holds real installed distributions,
installed by pip from wheels this module writes (no build backend, no network):

* ``poolkit``, a library in site-packages whose one line builds a pool for
  whoever calls it;
* ``mysvc``, the service, with a console script ``mysvc``, a ``python -m
  mysvc.cli`` entry and a WSGI module, whose two job functions call poolkit
  from two different lines;
* ``vendorkit``, the same kind of library installed with ``pip install
  --target`` into a directory put on ``PYTHONPATH`` (an AWS Lambda bundle);
* ``edsvc``, an editable install of a project whose sources stay in their own
  folder (the wheel holds only the ``.pth``, as PEP 660 editable wheels do).

Each test runs a program under the guard in a subprocess and reads the JSON
report: the pools must be filed under the two application lines (six each),
with poolkit's line as ``creator`` and the application line as ``app_frame``,
never as one site of twelve under the console script's ``sys.exit(main())``
or under the library's line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sysconfig
import venv
import zipfile
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]

POOLKIT = {
    "poolkit/__init__.py": (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "\n"
        "\n"
        "def run(task):\n"
        "    with ThreadPoolExecutor(max_workers=1) as pool:  # poolkit line\n"
        "        return pool.submit(task).result()\n"
    ),
}

VENDORKIT = {"vendorkit/__init__.py": POOLKIT["poolkit/__init__.py"]}

JOBS = (
    "import poolkit\n"
    "\n"
    "\n"
    "def nightly():\n"
    "    for _ in range(6):\n"
    "        poolkit.run(int)  # nightly line\n"
    "\n"
    "\n"
    "def hourly():\n"
    "    for _ in range(6):\n"
    "        poolkit.run(int)  # hourly line\n"
)

CLI = (
    "from . import jobs\n"
    "\n"
    "\n"
    "def main():\n"
    "    jobs.nightly()\n"
    "    jobs.hourly()\n"
    "    return 0\n"
    "\n"
    "\n"
    'if __name__ == "__main__":\n'
    "    main()\n"
)

MYSVC = {
    "mysvc/__init__.py": "",
    "mysvc/jobs.py": JOBS,
    "mysvc/cli.py": CLI,
    # gunicorn --check-config loads the app: the jobs run at import.
    "mysvc/wsgi.py": (
        "from . import jobs\n"
        "\n"
        "jobs.nightly()\n"
        "jobs.hourly()\n"
        "\n"
        "\n"
        "def app(environ, start_response):\n"
        '    start_response("200 OK", [])\n'
        '    return [b""]\n'
    ),
}

#: What the guard must find for mysvc's two jobs: (function, marker) -> pools.
EXPECTED = {("nightly", "# nightly line"): 6, ("hourly", "# hourly line"): 6}


def _line(source: str, marker: str) -> int:
    return next(n for n, text in enumerate(source.splitlines(), 1) if marker in text)


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    directory: Path, name: str, files: dict[str, str], entry_points: Optional[str] = None
) -> Path:
    """A pure-Python wheel of ``files`` with a real RECORD, as a build backend would write."""
    info = f"{name}-0.1.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n"
    contents[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: test_installed\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    if entry_points is not None:
        contents[f"{info}/entry_points.txt"] = entry_points
    record = [
        f"{path},sha256={_digest(text.encode())},{len(text.encode())}"
        for path, text in contents.items()
    ]
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


class InstalledEnv:
    """The module's virtual environment and the directories around it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "venv"
        bindir = "Scripts" if os.name == "nt" else "bin"
        self.bin = self.root / bindir
        self.python = str(self.bin / "python")
        self.target = base / "target"
        self.project = base / "edproject"

    def pip(self, *args: str) -> None:
        done = subprocess.run(
            [self.python, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr

    def site_packages(self) -> Path:
        out = subprocess.run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        )
        return Path(out.stdout.strip())

    def run(
        self,
        args: list[str],
        cwd: Path,
        env: Optional[dict[str, str]] = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` with only the given EXECUTOR_GUARD* variables and PYTHONPATH."""
        full = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_GUARD")}
        full.pop("PYTHONPATH", None)
        full.update(env or {})
        return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=120)

    def launch(
        self, report: Path, *args: str, cwd: Path, env: Optional[dict[str, str]] = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m executor_guard`` (quiet, threshold 10) writing ``report``."""
        command = [self.python, "-m", "executor_guard", "-q", "--threshold", "10"]
        return self.run([*command, "--report", str(report), *args], cwd=cwd, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> InstalledEnv:
    """One venv with poolkit, mysvc and edsvc installed, and vendorkit in a --target dir."""
    base = tmp_path_factory.mktemp("installed")
    venv.EnvBuilder(with_pip=True).create(base / "venv")
    env = InstalledEnv(base)
    site = env.site_packages()
    # executor_guard from this source tree (and psutil/structlog from the
    # running interpreter's environment), put on the path before the start-up
    # hook's .pth runs: the files under test, not a wheel built from them.
    purelib = sysconfig.get_paths()["purelib"]
    (site / "_eg_test_paths.pth").write_text(f"{ROOT / 'src'}\n{purelib}\n")
    (site / "executor_guard.pth").write_text((ROOT / "src" / "executor_guard.pth").read_text())

    wheels = base / "wheels"
    wheels.mkdir()
    poolkit = make_wheel(wheels, "poolkit", POOLKIT)
    mysvc = make_wheel(
        wheels, "mysvc", MYSVC, entry_points="[console_scripts]\nmysvc = mysvc.cli:main\n"
    )
    vendorkit = make_wheel(wheels, "vendorkit", VENDORKIT)
    env.pip("install", "--no-deps", "--no-index", "--quiet", str(poolkit), str(mysvc))
    env.pip(
        "install", "--no-deps", "--no-index", "--quiet", "--target", str(env.target), str(vendorkit)
    )

    # The editable project: sources in their own folder, with the egg-info
    # setuptools leaves beside them; the installed wheel holds only the .pth.
    source = env.project / "src"
    (source / "edsvc").mkdir(parents=True)
    (source / "edsvc" / "__init__.py").write_text("")
    (source / "edsvc" / "jobs.py").write_text(JOBS)
    (source / "edsvc" / "cli.py").write_text(CLI)
    (source / "edsvc.egg-info").mkdir()
    (source / "edsvc.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: edsvc\n")
    (source / "edsvc.egg-info" / "SOURCES.txt").write_text(
        "src/edsvc/__init__.py\nsrc/edsvc/cli.py\nsrc/edsvc/jobs.py\n"
    )
    editable = make_wheel(wheels, "edsvc", {"__editable__.edsvc-0.1.pth": f"{source}\n"})
    env.pip("install", "--no-deps", "--no-index", "--quiet", str(editable))
    return env


def _sites(report: Path) -> list[dict[str, Any]]:
    data = json.loads(report.read_text())
    return [site for site in data["sites"] if site["created"] >= 2]


def _assert_two_job_sites(
    sites: list[dict[str, Any]], app_file: Path, creator_file: Path, creator_source: str
) -> None:
    """Six pools at each of the two job lines; the library line is the creator of both."""
    creator_line = _line(creator_source, "# poolkit line")
    found = {(s["function"], s["line"]): s for s in sites}
    assert len(sites) == 2, [(s["file"], s["line"], s["created"]) for s in sites]
    for (function, marker), created in EXPECTED.items():
        line = _line(JOBS, marker)
        site = found.get((function, line))
        assert site is not None, (function, line, sorted(found))
        assert Path(site["file"]) == app_file
        assert site["created"] == created
        assert site["findings"] == []
        assert site["app_frame"] == {"file": str(app_file), "line": line, "function": function}
        assert site["creator"] == {
            "file": str(creator_file),
            "line": creator_line,
            "function": "run",
        }


def _assert_mysvc_sites(installed: InstalledEnv, report: Path) -> None:
    site = installed.site_packages()
    _assert_two_job_sites(
        _sites(report),
        site / "mysvc" / "jobs.py",
        site / "poolkit" / "__init__.py",
        POOLKIT["poolkit/__init__.py"],
    )


def test_a_console_script_files_pools_under_the_services_own_lines(
    installed: InstalledEnv, tmp_path: Path
) -> None:
    report = tmp_path / "out.json"
    done = installed.run(
        [str(installed.bin / "mysvc")],
        cwd=tmp_path,
        env={
            "EXECUTOR_GUARD": "log",
            "EXECUTOR_GUARD_THRESHOLD": "10",
            "EXECUTOR_GUARD_REPORT": str(report),
        },
    )
    assert done.returncode == 0, done.stderr
    _assert_mysvc_sites(installed, report)


def test_python_m_an_installed_package_is_application_code(
    installed: InstalledEnv, tmp_path: Path
) -> None:
    report = tmp_path / "out.json"
    done = installed.launch(report, "-m", "mysvc.cli", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _assert_mysvc_sites(installed, report)


def test_gunicorn_the_module_it_loads_is_application_code(
    installed: InstalledEnv, tmp_path: Path
) -> None:
    pytest.importorskip("gunicorn")
    report = tmp_path / "out.json"
    done = installed.run(
        [installed.python, "-m", "gunicorn", "--check-config", "-w", "1", "mysvc.wsgi:app"],
        cwd=tmp_path,
        env={
            "EXECUTOR_GUARD": "log",
            "EXECUTOR_GUARD_THRESHOLD": "10",
            "EXECUTOR_GUARD_REPORT": str(report),
        },
    )
    assert done.returncode == 0, done.stderr
    _assert_mysvc_sites(installed, report)


def test_a_library_installed_with_target_on_pythonpath_is_library_code(
    installed: InstalledEnv, tmp_path: Path
) -> None:
    app = tmp_path / "handler.py"
    app.write_text(JOBS.replace("poolkit", "vendorkit") + "\nnightly()\nhourly()\n")
    report = tmp_path / "out.json"
    done = installed.launch(
        report, str(app), cwd=tmp_path, env={"PYTHONPATH": str(installed.target)}
    )
    assert done.returncode == 0, done.stderr
    _assert_two_job_sites(
        _sites(report),
        app,
        installed.target / "vendorkit" / "__init__.py",
        VENDORKIT["vendorkit/__init__.py"],
    )


def test_an_editable_installs_sources_are_application_code(
    installed: InstalledEnv, tmp_path: Path
) -> None:
    # Run from a script elsewhere: only "no distribution owns these files"
    # makes the editable project's lines application code.
    runner = tmp_path / "run.py"
    runner.write_text("from edsvc.cli import main\n\nmain()\n")
    report = tmp_path / "out.json"
    done = installed.launch(report, str(runner), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    site = installed.site_packages()
    _assert_two_job_sites(
        _sites(report),
        installed.project / "src" / "edsvc" / "jobs.py",
        site / "poolkit" / "__init__.py",
        POOLKIT["poolkit/__init__.py"],
    )


def test_app_names_an_installed_package_as_application_code(
    installed: InstalledEnv, tmp_path: Path
) -> None:
    # Started from a script of its own, mysvc is just an installed package:
    # without --app every pool is the script's line (12, whose churn the
    # default threshold of 10 flags); with it, mysvc's two lines.
    runner = tmp_path / "run.py"
    runner.write_text("from mysvc.cli import main\n\nmain()  # runner line\n")
    reports = {}
    for name, extra in (("plain", []), ("app", ["--app", "mysvc"])):
        reports[name] = tmp_path / f"{name}.json"
        done = installed.launch(reports[name], *extra, str(runner), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    [plain] = _sites(reports["plain"])
    assert (Path(plain["file"]), plain["line"], plain["created"]) == (runner, 3, 12)
    assert plain["findings"] == ["churn"] and plain["app_frame"]["file"] == str(runner)
    _assert_mysvc_sites(installed, reports["app"])
