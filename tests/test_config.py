"""Configuration parsing: every bad value names its source and the value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import executor_guard
from executor_guard import ConfigError, _config
from executor_guard._config import Config


def test_defaults_match_the_product_contract() -> None:
    config = Config()
    assert (config.mode, config.threshold, config.window, config.stack_depth) == (
        "warn",
        10,
        None,
        32,
    )
    assert (config.ignore, config.report_path, config.log_format) == ((), None, "console")


@pytest.mark.parametrize(
    ("environ", "mode"),
    [
        ({}, None),
        ({"EXECUTOR_GUARD": ""}, None),
        ({"EXECUTOR_GUARD": "0"}, None),
        ({"EXECUTOR_GUARD": "1"}, "log"),
        ({"EXECUTOR_GUARD": "warn"}, "warn"),
        ({"EXECUTOR_GUARD": " RAISE "}, "raise"),
        ({"EXECUTOR_GUARD": "log"}, "log"),
    ],
)
def test_environment_mode_values(environ: dict[str, str], mode: object) -> None:
    assert _config.mode_from_environ(environ) == mode


def test_environment_overrides_defaults_and_round_trips() -> None:
    environ = {
        "EXECUTOR_GUARD": "raise",
        "EXECUTOR_GUARD_THRESHOLD": "25",
        "EXECUTOR_GUARD_WINDOW": "60",
        "EXECUTOR_GUARD_STACK_DEPTH": "8",
        "EXECUTOR_GUARD_IGNORE": "*/vendor/*, app.jobs.*",
        "EXECUTOR_GUARD_REPORT": "/tmp/r-{pid}.json",
        "EXECUTOR_GUARD_LOG_FORMAT": "json",
    }
    config = _config.from_environ(environ)
    assert config == Config(
        mode="raise",
        threshold=25,
        window=60.0,
        stack_depth=8,
        ignore=("*/vendor/*", "app.jobs.*"),
        report_path="/tmp/r-{pid}.json",
        log_format="json",
    )
    assert _config.from_environ(_config.to_environ(config)) == config


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXECUTOR_GUARD", "loud"),
        ("EXECUTOR_GUARD_THRESHOLD", "ten"),
        ("EXECUTOR_GUARD_THRESHOLD", "1"),
        ("EXECUTOR_GUARD_THRESHOLD", "-5"),
        ("EXECUTOR_GUARD_WINDOW", "-1"),
        ("EXECUTOR_GUARD_WINDOW", "nan"),
        ("EXECUTOR_GUARD_STACK_DEPTH", "9999"),
        ("EXECUTOR_GUARD_LOG_FORMAT", "xml"),
        ("EXECUTOR_GUARD_REPORT", "/tmp/{oops}.json"),
        ("EXECUTOR_GUARD_DUMP_SIGNAL", "SIGNOPE"),
    ],
)
def test_a_bad_environment_value_names_the_variable_and_the_value(name: str, value: str) -> None:
    environ = {"EXECUTOR_GUARD": "log", name: value}
    with pytest.raises(ConfigError) as excinfo:
        _config.from_environ(environ)
    message = str(excinfo.value)
    assert message.startswith(f"{name}: invalid value {value!r} (expected")
    assert excinfo.value.source == name


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("mode", "shout"),
        ("threshold", 1),
        ("threshold", True),
        ("threshold", 2.5),
        ("window", 0),
        ("window", "soon"),
        ("stack_depth", -1),
        ("ignore", 5),
        ("log_format", None),
    ],
)
def test_a_bad_keyword_names_the_keyword(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{option}=: invalid value"):
        executor_guard.install(**{option: value})
    assert not executor_guard.is_installed()


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown executor_guard option 'treshold'"):
        executor_guard.install(treshold=3)


@given(st.text())
def test_parsers_either_accept_or_raise_config_error_for_any_text(text: str) -> None:
    for parse in (
        _config.parse_threshold,
        _config.parse_stack_depth,
        _config.parse_window,
        _config.parse_ignore,
        _config.parse_report_path,
        _config.parse_signal,
        lambda v, s: _config.parse_mode(v, s, allow_one=True),
    ):
        try:
            parse(text, "SOURCE")
        except ConfigError as error:
            failure: ConfigError | None = error
        else:
            failure = None
        if failure is not None:
            assert failure.source == "SOURCE"
            assert repr(text) in str(failure)


@pytest.mark.parametrize("text", ["\u00b9", "\u0663", "\uff11\uff10", "+-3", "--3", "1_000"])
def test_threshold_rejects_non_ascii_and_odd_digit_strings(text: str) -> None:
    with pytest.raises(ConfigError, match="EXECUTOR_GUARD_THRESHOLD: invalid value"):
        _config.parse_threshold(text, "EXECUTOR_GUARD_THRESHOLD")


@given(st.integers())
def test_threshold_accepts_exactly_two_to_the_maximum(number: int) -> None:
    valid = 2 <= number <= _config.MAX_THRESHOLD
    try:
        assert _config.parse_threshold(str(number), "T") == number
        assert valid
    except ConfigError:
        assert not valid


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_window_accepts_only_finite_positive_seconds(number: float) -> None:
    try:
        assert _config.parse_window(number, "W") == number
        assert 0 < number <= _config.MAX_WINDOW
    except ConfigError:
        assert not (0 < number <= _config.MAX_WINDOW)
