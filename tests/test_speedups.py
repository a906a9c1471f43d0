"""The optional C hooks: used where built, and indistinguishable from the Python ones.

The pure-Python hooks are the reference. The C hooks only take the common case
and must leave the registry exactly as the Python hooks would; the
differential tests below replay the same program under both and compare every
count the report carries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import executor_guard
from executor_guard import _accel, _guard, _registry

pytestmark = pytest.mark.filterwarnings("ignore::executor_guard.ExecutorChurnWarning")


def _compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "").split()
    return bool(cc) and shutil.which(cc[0]) is not None


needs_speedups = pytest.mark.skipif(
    not _guard.speedups_active(), reason="the C hooks are not built or are disabled here"
)


@contextmanager
def pure_python() -> Iterator[None]:
    """Guards created inside use the Python hooks only."""
    executor_guard.uninstall()  # the next install patches with the Python wrappers
    saved = _accel._module
    _accel._module = False
    try:
        yield
    finally:
        executor_guard.uninstall()
        _accel._module = saved


def test_the_c_hooks_are_built_wherever_a_compiler_is() -> None:
    if os.environ.get("EXECUTOR_GUARD_PURE_PYTHON", "").strip() not in ("", "0"):
        pytest.skip("EXECUTOR_GUARD_PURE_PYTHON is set")
    if os.environ.get("EXECUTOR_GUARD_BUILD_PURE") or not _compiler():
        pytest.skip("no C compiler: the pure-Python hooks are the designed fallback")
    assert _guard.speedups_active()


class Counting:
    """Counts the calls that reach the Python hooks (the C hooks' slow path)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inits = 0
        self.shutdowns = 0
        before_init = _guard.Guard.before_init
        on_shutdown = _registry.on_shutdown

        def counted_init(guard: Any, pool: Any, frame: Any) -> Any:
            self.inits += 1
            return before_init(guard, pool, frame)

        def counted_shutdown(*args: Any) -> None:
            self.shutdowns += 1
            on_shutdown(*args)

        monkeypatch.setattr(_guard.Guard, "before_init", counted_init)
        monkeypatch.setattr(_registry, "on_shutdown", counted_shutdown)
        # The C shutdown hook holds the function it falls back to.
        monkeypatch.setattr(_accel, "SHUTDOWN_HOOK", type(_accel.SHUTDOWN_HOOK)(counted_shutdown))


@needs_speedups
def test_a_churning_site_is_recorded_in_c_after_its_first_creations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = Counting(monkeypatch)
    with executor_guard.guarded(mode="log", threshold=10**9) as guard:
        for _ in range(1000):
            with ThreadPoolExecutor(1):
                pass
        for _ in range(1000):
            ThreadPoolExecutor(1).shutdown()
    # Python runs for each creation whose stack is sampled (a site's first
    # STACK_FIRST, then one in STACK_EVERY) and for each site's first shutdown
    # (a new max_workers value); the C hooks record all the others.
    per_site = _registry.STACK_FIRST + len(
        range(_registry.STACK_EVERY, 1000, _registry.STACK_EVERY)
    )
    assert counting.inits == 2 * per_site
    assert counting.shutdowns == 2
    site_context, site_wait = sorted(
        guard.report().to_dict()["sites"], key=lambda s: s["shutdown"]["context"]
    )[::-1]
    assert site_context["shutdown"] == {
        "context": 1000,
        "wait": 0,
        "nowait": 0,
        "never": 0,
        "open": 0,
    }
    assert site_wait["shutdown"] == {"context": 0, "wait": 1000, "nowait": 0, "never": 0, "open": 0}
    assert site_context["created"] == site_wait["created"] == 1000
    assert site_context["live"] == site_wait["live"] == 0
    assert site_context["peak_live"] == 1


# -- differential: the same program under both hooks ---------------------------


class Sub(ThreadPoolExecutor):
    """A user subclass: its __init__ and shutdown run inside the guarded calls."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        super().shutdown(wait, **kwargs)


def make(kind: int) -> ThreadPoolExecutor:
    # One line per kind of construction, so each is its own call site.
    if kind == 0:
        return ThreadPoolExecutor(1)
    if kind == 1:
        return ThreadPoolExecutor(max_workers=3)
    return Sub()


def finish(pool: ThreadPoolExecutor, how: int, kept: list[ThreadPoolExecutor]) -> None:
    if how == 0:
        pool.shutdown()
    elif how == 1:
        pool.shutdown(wait=False)
    elif how == 2:
        pool.shutdown(cancel_futures=True)
    elif how == 3:
        with pool:
            pass
    elif how == 4:
        pool.shutdown()
        pool.shutdown()  # a second shutdown changes nothing
    elif how == 5:
        kept.append(pool)  # still open at the report
    # how == 6: dropped without shutdown (never)


def replay(steps: list[tuple[int, int, int]], threshold: int, window: Any) -> list[dict[str, Any]]:
    """Run ``steps`` (kind, how, thread) under a fresh guard; the report's sites."""
    kept: list[ThreadPoolExecutor] = []
    names = ("MainThread", "worker-1")
    with executor_guard.guarded(mode="log", threshold=threshold, window=window) as guard:
        me = threading.current_thread()
        original = me.name
        try:
            for kind, how, thread in steps:
                me.name = names[thread]  # stands for creations from two threads
                finish(make(kind), how, kept)
        finally:
            me.name = original
        sites = guard.report(process_figures=False).to_dict()["sites"]
    for pool in kept:
        pool.shutdown()
    for site in sites:
        for key in ("first_at", "last_at", "rate_per_min"):
            site.pop(key, None)
        # The two runs are called from different lines: compare stack counts.
        site["stacks"] = sorted(stack["count"] for stack in site["stacks"])
    return sorted(sites, key=lambda s: (s["line"], s["function"]))


steps_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 6), st.integers(0, 1)), max_size=120
)


@needs_speedups
@settings(max_examples=60, deadline=None)
@given(
    steps=steps_strategy,
    threshold=st.integers(2, 40),
    window=st.sampled_from([None, 3600.0]),
)
def test_the_c_hooks_record_exactly_what_the_python_hooks_record(
    steps: list[tuple[int, int, int]], threshold: int, window: Any
) -> None:
    with_c = replay(steps, threshold, window)
    with pure_python():
        with_python = replay(steps, threshold, window)
    assert with_c == with_python


@needs_speedups
def test_a_long_run_at_one_site_matches_too() -> None:
    steps = [(0, 0, 0)] * 700 + [(0, 3, 0)] * 300 + [(0, 0, 1)] * 50 + [(1, 1, 0)] * 20
    with_c = replay(steps, 10, None)
    with pure_python():
        with_python = replay(steps, 10, None)
    assert with_c == with_python
    assert with_c[0]["created"] == 1050


def test_pure_python_is_chosen_by_the_environment() -> None:
    code = "from executor_guard import _guard; print(_guard.speedups_active())"
    env = dict(os.environ, EXECUTOR_GUARD_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
    assert out.stderr == ""


SUBINTERPRETER = """
import _testcapi, textwrap
from concurrent.futures import ThreadPoolExecutor
import executor_guard
from executor_guard import _guard

guard = executor_guard.install(mode="log", threshold=10**9)
for _ in range(100):
    ThreadPoolExecutor(1).shutdown()
inner = textwrap.dedent('''
    from concurrent.futures import ThreadPoolExecutor
    import executor_guard
    from executor_guard import _guard
    guard = executor_guard.install(mode="log", threshold=10**9)
    for _ in range(100):
        ThreadPoolExecutor(1).shutdown()
    site = guard.report(process_figures=False).to_dict()["sites"][0]
    assert (site["created"], site["shutdown"]["wait"]) == (100, 100), site
    assert not _guard.speedups_active()  # the C hooks belong to the main interpreter
''')
assert _testcapi.run_in_subinterp(inner) == 0
for _ in range(100):
    ThreadPoolExecutor(1).shutdown()
sites = guard.report(process_figures=False).to_dict()["sites"]
assert [s["created"] for s in sites] == [100, 100], sites
assert _guard.speedups_active()
print("ok")
"""


@needs_speedups
def test_a_sub_interpreter_gets_the_python_hooks_and_the_main_one_keeps_the_c_hooks(
    tmp_path: Any,
) -> None:
    pytest.importorskip("_testcapi")
    script = tmp_path / "subinterpreter.py"
    script.write_text(SUBINTERPRETER)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@needs_speedups
def test_green_threads_keep_the_python_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    native = threading.get_ident

    def green_ident() -> int:  # what gevent's and eventlet's patches look like
        return native()

    monkeypatch.setattr(threading, "get_ident", green_ident)
    with executor_guard.guarded() as guard:
        assert "before_init" not in vars(guard)
        ThreadPoolExecutor(1).shutdown()
    assert guard.report(process_figures=False).to_dict()["totals"]["pools"] == 1
    monkeypatch.undo()
    with executor_guard.guarded() as guard:
        assert "before_init" in vars(guard)


# -- what the patched methods must do exactly as the Python wrappers do ----------


@pytest.fixture(params=["default", "pure"])
def hooks(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test with the installed hooks and again with the pure-Python ones."""
    if request.param == "default":
        yield "default"
        return
    with pure_python():
        yield "pure"


def test_a_call_that_does_not_bind_records_nothing(hooks: str) -> None:
    with executor_guard.guarded(mode="log", threshold=10**9) as guard:
        pool = ThreadPoolExecutor(1)
        with pytest.raises(TypeError):
            pool.shutdown(True, False)  # type: ignore[misc]  # cancel_futures is keyword-only
        with pytest.raises(TypeError):
            pool.shutdown(wiat=False)  # type: ignore[call-arg]
        pool.shutdown(wait=False)
        with pytest.raises(TypeError):
            ThreadPoolExecutor(1, bogus=2)  # type: ignore[call-arg]
        sites = guard.report(process_figures=False).to_dict()["sites"]
    assert len(sites) == 1
    assert sites[0]["created"] == 1
    assert sites[0]["shutdown"]["nowait"] == 1
    assert sites[0]["shutdown"]["wait"] == 0


class Workers(int):
    """A max_workers value whose hash and equality are Python code."""

    def __hash__(self) -> int:
        return int.__hash__(self)

    def __eq__(self, other: object) -> bool:
        return int(self) == other


def test_max_workers_of_any_type_is_counted_exactly(hooks: str) -> None:
    with executor_guard.guarded(mode="log", threshold=10**9) as guard:
        for _ in range(100):
            ThreadPoolExecutor(Workers(2)).shutdown()
        site = guard.report(process_figures=False).to_dict()["sites"][0]
    assert site["created"] == site["shutdown"]["wait"] == 100
    assert site["max_workers"] == {"2": 100}
    assert site["live"] == 0


def test_patched_methods_take_weak_references_and_introspect(hooks: str) -> None:
    import inspect
    import weakref

    with executor_guard.guarded():
        pool = ThreadPoolExecutor(1)
        method = weakref.WeakMethod(pool.shutdown)
        assert weakref.ref(ThreadPoolExecutor.__init__)() is ThreadPoolExecutor.__init__
        assert inspect.getfullargspec(ThreadPoolExecutor.__init__).args[:2] == [
            "self",
            "max_workers",
        ]
        method()()  # type: ignore[misc]
    del pool


def test_a_refused_creation_keeps_the_exception_context_it_was_raised_in(hooks: str) -> None:
    def build() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(1)  # the one call site

    with executor_guard.guarded(mode="raise", threshold=2):
        build().shutdown()
        try:
            raise KeyError("outer")
        except KeyError:
            with pytest.raises(executor_guard.ExecutorChurnError) as refused:
                build()
    error = refused.value
    assert error.__cause__ is None and error.__suppress_context__
    assert isinstance(error.__context__, KeyError)
