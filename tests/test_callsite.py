"""Call-site resolution: the application-frame rule on real and planted frames."""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from pathlib import Path
from types import FrameType

import pytest

from executor_guard import _callsite, _patch
from executor_guard._callsite import APP, INTERNAL, LIBRARY, Classifier

STDLIB = sysconfig.get_paths()["stdlib"]


def test_classifier_kinds() -> None:
    kind = Classifier()
    assert kind(__file__) == APP
    assert kind("<string>") == APP
    assert kind("<frozen importlib._bootstrap>") == LIBRARY
    assert kind(threading.__file__) == LIBRARY
    assert kind(os.path.join(STDLIB, "concurrent", "futures", "thread.py")) == INTERNAL
    assert kind(_callsite.__file__) == INTERNAL
    assert kind("/opt/somewhere/site-packages/tqdm/contrib/concurrent.py") == LIBRARY
    assert kind("relative/app.py") == APP


def test_classifier_cache_is_bounded() -> None:
    kind = Classifier(library=(), internal=())
    for index in range(_callsite._CACHE_LIMIT + 10):
        kind(f"/gen/{index}.py")
    assert len(kind.cache) <= _callsite._CACHE_LIMIT


def inner() -> FrameType:
    return sys._getframe()


def outer() -> FrameType:
    return inner()


def test_locate_skips_internal_and_constructor_frames_and_stops_at_the_first_app_frame() -> None:
    frame = outer()
    this = os.path.abspath(__file__)

    def kind_of(filename: str) -> int:
        return APP if filename == this else LIBRARY

    creator, site = _callsite.locate(frame, kind_of)
    assert creator is frame and site is frame

    skip = frozenset({id(inner.__code__)})
    creator, site = _callsite.locate(frame, kind_of, skip)
    assert site is not None and site.f_code is outer.__code__


def test_locate_falls_back_to_the_creator_when_no_frame_is_application_code() -> None:
    frame = outer()
    creator, site = _callsite.locate(frame, lambda filename: LIBRARY)
    assert creator is frame and site is frame


def test_stack_is_innermost_last_and_bounded() -> None:
    frames = _callsite.stack(outer(), 2)
    assert [f[2].rsplit(".", 1)[-1] for f in frames] == ["outer", "inner"]
    assert all(isinstance(f[1], int) for f in frames)


def test_generated_wrappers_are_internal_and_stock_classes_need_no_constructor_skip() -> None:
    from concurrent.futures import ThreadPoolExecutor

    import executor_guard

    executor_guard.install(mode="log")
    try:
        # The generated wrappers' code is ours.
        generated = _patch._generate(
            ThreadPoolExecutor.__init__.__wrapped__, "__init__", "\n    pass", {}
        )
        assert Classifier()(generated.__code__.co_filename) == INTERNAL
        # Nothing in the stock class's constructor chain is outside
        # concurrent.futures and executor_guard: the hot path skips nothing.
        assert _callsite.init_codes(ThreadPoolExecutor) is None

        class Mine(ThreadPoolExecutor):
            def __init__(self) -> None:
                super().__init__(1)

        assert _callsite.init_codes(Mine) == {id(Mine.__init__.__code__)}
    finally:
        executor_guard.uninstall()


# -- application code: the app option, distributions, the start package ------------


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _bare(app: tuple[str, ...] = ()) -> Classifier:
    """A classifier with no standard library or site-packages prefixes of its own."""
    return Classifier(library=(), internal=(), app=app, site=())


def test_a_distributions_files_under_a_path_entry_are_library_and_the_rest_application(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pip --target directory: vendorkit's RECORD lists its files; loose.py is nobody's.
    _tree(
        tmp_path,
        {
            "vendorkit/__init__.py": "",
            "vendorkit-1.0.dist-info/RECORD": (
                "vendorkit/__init__.py,sha256=x,0\n"
                '"odd,name.py",sha256=y,0\n'
                "vendorkit-1.0.dist-info/RECORD,,\n"
                "../../bin/vendorkit,sha256=z,0\n"
            ),
            "loose.py": "",
            # Development metadata beside a project's sources: not an installation.
            "mine.egg-info/SOURCES.txt": "mine/__init__.py\n",
            "mine/__init__.py": "",
            # A legacy installed egg-info lists what it installed.
            "legacy-2.0-py3.egg-info/installed-files.txt": "../legacy/__init__.py\n",
            "legacy/__init__.py": "",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    kind = _bare()
    assert kind(str(tmp_path / "vendorkit" / "__init__.py")) == LIBRARY
    assert kind(str(tmp_path / "odd,name.py")) == LIBRARY
    assert kind(str(tmp_path / "legacy" / "__init__.py")) == LIBRARY
    assert kind(str(tmp_path / "loose.py")) == APP
    assert kind(str(tmp_path / "mine" / "__init__.py")) == APP
    # Named by the app option, installed code is application code: by import
    # name (the package and its modules) or by path.
    assert _bare(("vendorkit",))(str(tmp_path / "vendorkit" / "__init__.py")) == APP
    assert _bare(("vendorkit.*",))(str(tmp_path / "vendorkit" / "__init__.py")) == APP
    assert _bare(("other",))(str(tmp_path / "vendorkit" / "__init__.py")) == LIBRARY
    by_path = _bare((str(tmp_path / "vendorkit"),))
    assert by_path(str(tmp_path / "vendorkit" / "__init__.py")) == APP
    assert _bare(("*/vendorkit/*.py",))(str(tmp_path / "vendorkit" / "__init__.py")) == APP


def test_an_entry_added_after_install_is_read_when_first_met(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = _bare()
    _tree(tmp_path, {"late/__init__.py": "", "late-1.dist-info/RECORD": "late/__init__.py,,\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert kind(str(tmp_path / "late" / "__init__.py")) == LIBRARY


def test_site_packages_and_the_standard_library_stay_library_unless_named() -> None:
    kind = Classifier()
    assert kind(threading.__file__) == LIBRARY
    assert kind("/opt/somewhere/site-packages/tqdm/contrib/concurrent.py") == LIBRARY
    assert Classifier(app=("*/tqdm/*",))("/opt/x/site-packages/tqdm/std.py") == APP


def test_servers_name_their_application_module_on_the_command_line() -> None:
    served = _callsite.served
    assert served(["-w", "2", "-b", "localhost:8000", "mysvc.wsgi:app"], {}) == {"mysvc"}
    assert served(["--factory", "mysvc.main:create_app()", "--port", "80"], {}) == {"mysvc"}
    assert served(["-k", "uvicorn.workers.UvicornWorker", "-w", "2", "mysvc.wsgi"], {}) == {"mysvc"}
    assert served(["-A", "proj", "worker", "-l", "info"], {}) == {"proj"}
    assert served(["-Aproj.celery:app", "worker"], {}) == {"proj"}
    assert served(["--app=proj", "beat"], {}) == {"proj"}
    assert served(["run"], {"FLASK_APP": "hello.app"}) == {"hello"}
    assert served(["-b", "0.0.0.0:80", "-c", "python:conf.gunicorn"], {}) == frozenset()


def test_the_start_package_of_modules_wrappers_servers_and_runners(tmp_path: Path) -> None:
    start = _callsite.start_names
    assert start("mysvc.cli", None, ["mysvc/cli.py"], []) == {"mysvc"}
    assert start("gunicorn.__main__", None, ["g", "mysvc.wsgi:app"], []) == {"mysvc"}
    assert start("pytest", None, ["pytest", "tests"], []) == frozenset()
    assert start(None, str(tmp_path / "app.py"), ["app.py"], []) == frozenset()
    assert start(None, None, [], []) == frozenset()

    # A console script: pip's wrapper, and the distribution whose entry point it is.
    site = tmp_path / "site"
    _tree(
        site,
        {
            "mysvc-0.1.dist-info/entry_points.txt": (
                "[console_scripts]\nmysvc = mysvc.cli:main\n[other]\nx = y\n"
            ),
            "mysvc-0.1.dist-info/RECORD": (
                "mysvc/__init__.py,,\nmysvc_plugins/__init__.py,,\n../../../bin/mysvc,,\n"
            ),
        },
    )
    wrapper = tmp_path / "bin" / "mysvc"
    _tree(
        tmp_path,
        {
            "bin/mysvc": (
                "#!/venv/bin/python\nimport re\nimport sys\nfrom mysvc.cli import main\n"
                "if __name__ == '__main__':\n    sys.exit(main())\n"
            ),
            "bin/gunicorn": "#!/venv/bin/python\nfrom gunicorn.app.wsgiapp import run\nrun()\n",
        },
    )
    entries = [str(site) + os.sep]
    assert start(None, str(wrapper), [str(wrapper)], entries) == {"mysvc", "mysvc_plugins"}
    gunicorn = str(tmp_path / "bin" / "gunicorn")
    assert start(None, gunicorn, [gunicorn, "svc.wsgi:app"], entries) == {"svc"}
    assert _callsite.wrapper_target(str(wrapper)) == ("mysvc.cli", None)


def test_the_start_package_is_resolved_once_main_is_known_and_clears_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    _tree(tmp_path, {"svc/__init__.py": "", "svc-1.dist-info/RECORD": "svc/__init__.py,,\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    kind = _bare()
    target = str(tmp_path / "svc" / "__init__.py")
    assert kind(target) == LIBRARY  # start-up: __main__ says nothing yet
    main.__spec__ = types.SimpleNamespace(name="svc.cli")  # type: ignore[assignment]
    kind(str(tmp_path / "another.py"))  # a new file: the start package is looked up
    assert kind.start == {"svc"}
    assert kind(target) == APP


def _pools_from_one_app_line_through_two_library_lines(report_lines: dict[str, int]) -> None:
    """Exec a library with two pool-building lines; one application line calls both."""
    from concurrent.futures import ThreadPoolExecutor

    library = (
        "def first(cls):\n"
        "    cls(1).shutdown()  # first\n"
        "\n"
        "def second(cls):\n"
        "    cls(1).shutdown()  # second\n"
    )
    path = os.path.join(STDLIB, "_executor_guard_test_library.py")
    namespace: dict[str, object] = {}
    exec(compile(library, path, "exec"), namespace)
    for function in (namespace["first"], namespace["second"]) * 3:
        function(ThreadPoolExecutor)  # type: ignore[operator]  # app line
    report_lines["app"] = sys._getframe().f_lineno - 1


def test_one_application_line_through_two_creator_lines_is_two_sites() -> None:
    import executor_guard

    lines: dict[str, int] = {}
    guard = executor_guard.install(mode="log")
    try:
        _pools_from_one_app_line_through_two_library_lines(lines)
        # A direct creation at an application line is still its own site.
        for _ in range(2):
            from concurrent.futures import ThreadPoolExecutor

            ThreadPoolExecutor(1).shutdown()  # direct
        direct = sys._getframe().f_lineno - 1
        sites = guard.report().to_dict()["sites"]
    finally:
        executor_guard.uninstall()
    here = os.path.abspath(__file__)
    mine = [s for s in sites if s["file"] == here]
    by_creator = {s["creator"]["line"]: s for s in mine if s["line"] == lines["app"]}
    assert sorted(by_creator) == [2, 5]
    for site in by_creator.values():
        assert site["created"] == 3
        assert site["creator"]["file"].endswith("_executor_guard_test_library.py")
        assert site["app_frame"] == {
            "file": here,
            "line": lines["app"],
            "function": "_pools_from_one_app_line_through_two_library_lines",
        }
    [own] = [s for s in mine if s["line"] == direct]
    assert own["created"] == 2
    assert (
        own["creator"]
        == own["app_frame"]
        == {
            "file": here,
            "line": direct,
            "function": own["function"],
        }
    )


def test_a_site_with_no_application_frame_has_no_app_frame() -> None:
    import executor_guard

    library = "def build(cls):\n    cls(1).shutdown()\n"
    path = os.path.join(STDLIB, "_executor_guard_test_only_library.py")
    namespace: dict[str, object] = {}
    exec(compile(library, path, "exec"), namespace)
    from concurrent.futures import ThreadPoolExecutor

    guard = executor_guard.install(mode="log")
    try:
        # Called from a library frame only: a thread started by the standard library.
        worker = threading.Thread(target=namespace["build"], args=(ThreadPoolExecutor,))  # type: ignore[arg-type]
        worker.start()
        worker.join()
        sites = guard.report().to_dict()["sites"]
    finally:
        executor_guard.uninstall()
    [site] = [s for s in sites if s["file"] == path]
    assert site["app_frame"] is None
    assert (site["creator"]["file"], site["creator"]["line"]) == (path, 2)
