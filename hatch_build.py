"""Build the optional C hooks (``executor_guard._speedups``) into the wheel.

The extension only speeds up the common case of the two hot paths; the
pure-Python code is complete without it. So a failed build (no compiler, no
Python headers, an unknown platform) prints one warning and produces a
pure-Python wheel instead of failing the install, the way coverage.py's and
markupsafe's optional extensions behave. ``EXECUTOR_GUARD_BUILD_PURE=1``
skips the attempt.

Editable installs compile the module in place, next to the sources, so the
editable import finds it; regular wheels get it added as a platform-specific
file.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = os.path.join("src", "executor_guard", "_speedups.c")


def _compile(source: str, target: str) -> None:
    """Compile ``source`` into the extension module ``target`` with setuptools' compiler setup."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    with tempfile.TemporaryDirectory() as tmp:
        distribution = Distribution(
            {"name": "executor-guard", "ext_modules": [Extension("_speedups", [source])]}
        )
        command = build_ext(distribution)
        command.build_lib = tmp
        command.build_temp = os.path.join(tmp, "temp")
        command.ensure_finalized()
        command.run()
        built = command.get_ext_fullpath("_speedups")
        shutil.copyfile(built, target)


class SpeedupsBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("EXECUTOR_GUARD_BUILD_PURE"):
            return
        source = os.path.join(self.root, SOURCE)
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        name = "_speedups" + suffix
        if version == "editable":
            target = os.path.join(self.root, "src", "executor_guard", name)
        else:
            target = os.path.join(self.directory, "speedups", name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            # Quietly: a compiler's chatter is not news to someone installing.
            with open(os.devnull, "w") as devnull:
                stdout = sys.stdout
                sys.stdout = devnull
                try:
                    _compile(source, target)
                finally:
                    sys.stdout = stdout
        except (Exception, SystemExit) as exc:  # setuptools exits on compiler errors
            sys.stderr.write(
                f"executor_guard: the optional C hooks were not built ({exc!r}); "
                "the pure-Python hooks will be used\n"
            )
            return
        if version != "editable":
            build_data["force_include"][target] = "executor_guard/" + name
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
