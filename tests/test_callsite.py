"""Call-site resolution: the application-frame rule on real and planted frames."""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from types import FrameType

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
