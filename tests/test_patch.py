"""Patching: where, how it is undone, and that pools behave exactly as before."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.thread
import gc
import inspect
import pickle
import subprocess
import sys
import textwrap
import weakref
from concurrent.futures import ThreadPoolExecutor as EarlyImport

import pytest

import executor_guard
from executor_guard import _patch

from .helpers import line_of

TPE = concurrent.futures.thread.ThreadPoolExecutor


def originals() -> dict[str, object]:
    return {name: vars(TPE)[name] for name in ("__init__", "shutdown")}


def test_uninstall_restores_the_exact_original_functions() -> None:
    before = originals()
    executor_guard.install()
    patched = originals()
    assert patched["__init__"] is not before["__init__"]
    assert patched["shutdown"] is not before["shutdown"]
    executor_guard.uninstall()
    assert originals() == before
    assert all(originals()[name] is before[name] for name in before)


def test_install_is_idempotent() -> None:
    executor_guard.install()
    first = originals()
    guard = executor_guard.install(threshold=20)
    assert originals() == first
    assert guard.config.threshold == 20
    assert guard is executor_guard.install()
    executor_guard.uninstall()
    assert not _patch.installed()
    assert all(originals()[name] is not first[name] for name in first)
    assert all(not hasattr(originals()[name], "__wrapped__") for name in first)


def test_uninstall_leaves_a_foreign_patch_in_place(capsys: object) -> None:
    before = originals()
    executor_guard.install()
    ours = vars(TPE)["shutdown"]

    def theirs(self: object, *args: object, **kwargs: object) -> None:
        ours(self, *args, **kwargs)  # type: ignore[operator]

    TPE.shutdown = theirs  # type: ignore[method-assign]
    try:
        executor_guard.uninstall()
        assert vars(TPE)["shutdown"] is theirs
        assert vars(TPE)["__init__"] is before["__init__"]
        TPE(1).shutdown()  # our leftover wrapper passes straight through
    finally:
        TPE.shutdown = before["shutdown"]  # type: ignore[method-assign]


def test_signatures_names_and_docs_are_unchanged() -> None:
    before = {name: inspect.signature(getattr(TPE, name)) for name in ("__init__", "shutdown")}
    executor_guard.install()
    for name, signature in before.items():
        wrapper = getattr(TPE, name)
        assert inspect.signature(wrapper) == signature
        assert wrapper.__name__ == name
        assert wrapper.__qualname__ == f"ThreadPoolExecutor.{name}"
        assert wrapper.__doc__ == wrapper.__wrapped__.__doc__
    # Plain functions pickle by qualified name; ours must resolve to itself.
    assert pickle.loads(pickle.dumps(TPE.shutdown)) is TPE.shutdown
    assert pickle.loads(pickle.dumps(TPE)) is TPE


def test_generated_wrappers_pass_every_argument_spelling_through() -> None:
    with executor_guard.guarded() as guard:
        pools = [
            TPE(),
            TPE(2, "named"),
            TPE(max_workers=3, thread_name_prefix="kw", initializer=None, initargs=()),
        ]
        assert [p._max_workers for p in pools[1:]] == [2, 3]
        assert pools[1]._thread_name_prefix == "named"
        pools[0].shutdown(True)
        pools[1].shutdown(False, cancel_futures=True)
        pools[2].shutdown(wait=True, cancel_futures=False)
    sites = guard.report().to_dict()["sites"]
    assert sum(s["created"] for s in sites) == 3
    modes = {m: sum(s["shutdown"][m] for s in sites) for m in ("wait", "nowait")}
    assert modes == {"wait": 2, "nowait": 1}
    assert sum(s["cancel_futures"] for s in sites) == 1


def test_every_way_of_reaching_the_class_is_seen() -> None:
    with executor_guard.guarded() as guard:
        concurrent.futures.ThreadPoolExecutor(1).shutdown()
        EarlyImport(1).shutdown()
        concurrent.futures.thread.ThreadPoolExecutor(1).shutdown()
    report = guard.report().to_dict()
    assert report["totals"]["pools"] == 3
    assert report["totals"]["sites"] == 3


class DefinedBefore(TPE):
    """A user subclass defined before install, overriding __init__ and shutdown."""

    def __init__(self, workers: int) -> None:
        super().__init__(max_workers=workers)
        self.extra = True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait, cancel_futures=cancel_futures)


def make_before() -> DefinedBefore:
    return DefinedBefore(2)  # site of DefinedBefore


@pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")
def test_subclasses_defined_before_and_after_install_are_attributed_to_their_callers() -> None:
    with executor_guard.guarded(threshold=3) as guard:

        class DefinedAfter(DefinedBefore):
            pass

        def make_after() -> DefinedAfter:
            return DefinedAfter(1)  # site of DefinedAfter

        for _ in range(3):
            with make_before():
                pass
            make_after().shutdown(wait=False)
    report = guard.report()
    before = report.site(__file__, line_of(make_before, "site of DefinedBefore"))
    after = report.site(__file__, line_of(make_after, "site of DefinedAfter"))
    assert before is not None and after is not None
    assert before["classes"] == {"DefinedBefore": 3}
    assert after["classes"] == {"DefinedAfter": 3}
    assert before["shutdown"]["context"] == 3
    assert after["shutdown"]["nowait"] == 3
    assert before["function"] == "make_before"
    assert report.to_dict()["totals"]["sites"] == 2


def test_a_guarded_pool_is_collected_like_an_unguarded_one() -> None:
    def lifetimes() -> tuple[bool, bool]:
        idle = TPE(2)
        idle_ref = weakref.ref(idle)
        del idle
        busy = TPE(1)
        busy.submit(sum, [1, 2]).result()
        busy.shutdown(wait=True)
        busy_ref = weakref.ref(busy)
        del busy
        return idle_ref() is None, busy_ref() is None

    unguarded = lifetimes()
    with executor_guard.guarded():
        guarded = lifetimes()
    assert guarded == unguarded == (True, True)


def test_the_registry_holds_no_strong_reference_to_pools() -> None:
    with executor_guard.guarded() as guard:
        pools = [TPE(1) for _ in range(5)]
        refs = [weakref.ref(p) for p in pools]
        del pools
        gc.collect()
        assert all(r() is None for r in refs)
    site = guard.report().to_dict()["sites"][0]
    assert site["shutdown"]["never"] == 5
    assert site["live"] == 0
    assert site["findings"] == ["never_shutdown"]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_install_does_not_import_multiprocessing_and_patches_process_pools_on_import() -> None:
    result = run_python(
        """
        import sys
        import executor_guard
        executor_guard.install(mode="log")
        assert "multiprocessing" not in sys.modules, "install imported multiprocessing"
        assert "concurrent.futures.process" not in sys.modules
        from concurrent.futures import ProcessPoolExecutor
        import concurrent.futures.process as process
        assert process.ProcessPoolExecutor.__init__.__wrapped__ is not None
        assert process.__loader__.__class__.__name__ != "_DeferredLoader"
        pool = ProcessPoolExecutor(1)
        pool.shutdown()
        site = executor_guard.report().to_dict()["sites"][0]
        print(site["classes"], site["shutdown"]["wait"])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'ProcessPoolExecutor': 1} 1"
