"""Shared fixtures: every test starts and ends with no guard and empty tables."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest

from executor_guard import _callsite, _diagnostics, _guard, _patch, _registry

pytest_plugins = ["pytester"]


def _forget_everything() -> None:
    _guard.uninstall()
    state = _guard._state
    state.installed = None
    state.last = None
    state.suspended.clear()
    _callsite.types.clear()
    _registry._records.clear()
    _registry._collected.clear()
    _diagnostics.forget()


@pytest.fixture(autouse=True)
def _clean_guard_state() -> Iterator[None]:
    """Restore the global state the guard keeps, like structlog's test suite does."""
    filters = list(warnings.filters)
    _forget_everything()
    yield
    gc.collect()
    _forget_everything()
    warnings.filters[:] = filters
    assert not _patch.installed()
