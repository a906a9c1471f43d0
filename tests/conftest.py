"""Shared fixtures: every test starts and ends with no guard and empty tables."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest

from executor_guard import _patch
from executor_guard._state import STATE

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _clean_guard_state() -> Iterator[None]:
    """Restore the global state the guard keeps, like structlog's test suite does."""
    filters = list(warnings.filters)
    STATE.reset()
    yield
    gc.collect()
    STATE.reset()
    warnings.filters[:] = filters
    assert not _patch.installed()
