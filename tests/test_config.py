"""Configuration: one table of options, and every bad value names its source and the value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import executor_guard
from executor_guard import ConfigError, _cli, _config
from executor_guard._config import OPTIONS, Config

#: For each row of the table, a value other than its default in each spelling:
#: (keyword value, variable text, command-line arguments, the parsed value).
SAMPLES: dict[str, tuple[Any, str, list[str], Any]] = {
    "mode": ("raise", "RAISE", ["--mode", "raise"], "raise"),
    "threshold": (25, "25", ["--threshold", "25"], 25),
    "window": (60, "60", ["--window", "60"], 60.0),
    "stack_depth": (8, "8", ["--stack-depth", "8"], 8),
    "ignore": (
        ["*/vendor/*", "app.jobs.*"],
        "*/vendor/*, app.jobs.*",
        ["--ignore", "*/vendor/*", "--ignore", "app.jobs.*"],
        ("*/vendor/*", "app.jobs.*"),
    ),
    "report_path": (
        "/tmp/r-{pid}.json",
        "/tmp/r-{pid}.json",
        ["--report", "/tmp/r-{pid}.json"],
        "/tmp/r-{pid}.json",
    ),
    "baseline": ("b.json", "b.json", ["--baseline", "b.json"], "b.json"),
    "fail_on": ("churn", "Churn", ["--fail-on", "churn"], "churn"),
    "log_format": ("json", "json", ["--log-format", "json"], "json"),
    "log_target": ("logging", "logging", ["--log-target", "logging"], "logging"),
    "dump_signal": ("USR1", "usr1", ["--dump-signal", "SIGUSR1"], "SIGUSR1"),
    "app": (
        ["mysvc", "*/layer/*"],
        "mysvc, */layer/*",
        ["--app", "mysvc", "--app", "*/layer/*"],
        ("mysvc", "*/layer/*"),
    ),
    "metrics": ("otel", "OTEL", ["--metrics", "otel"], "otel"),
    # No flag: the launcher always reports on SIGTERM.
    "sigterm": (True, "yes", [], True),
}


def test_every_row_has_a_sample_and_every_spelling() -> None:
    assert sorted(SAMPLES) == sorted(option.name for option in OPTIONS)
    for option in OPTIONS:
        assert (option.env, option.flag) != (None, None), option
        assert option.pyproject == option.name
        assert option.help


def test_config_has_a_field_per_row_in_order_with_the_rows_defaults() -> None:
    names = [option.name for option in OPTIONS]
    assert names == list(Config.__slots__)
    assert names == list(Config.__annotations__)
    assert {option.name: option.default for option in OPTIONS} == Config().options()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_row_is_reachable_by_keyword_environment_and_command_line(name: str) -> None:
    option = _config.BY_NAME[name]
    keyword, text, args, expected = SAMPLES[name]
    assert expected != option.default
    assert expected == getattr(_config.from_options(**{name: keyword}), name)
    assert option.env is not None
    assert expected == getattr(_config.from_environ({option.env: text}), name)
    namespace = _cli._run_parser().parse_args([*args, "app.py"])
    assert ({name: expected} if option.flag else {}) == _cli.options_given(namespace, OPTIONS)


def test_every_row_round_trips_through_the_environment() -> None:
    config = _config.from_options(**{name: sample[0] for name, sample in SAMPLES.items()})
    assert config == Config(**{name: sample[3] for name, sample in SAMPLES.items()})
    exported = _config.to_environ(config)
    assert sorted(exported) == sorted(option.env for option in OPTIONS if option.exported)
    # fail_on is the one row a child does not inherit: its launcher decides its own status.
    assert [option.name for option in OPTIONS if not option.exported] == ["fail_on"]
    assert config.replace(fail_on="never") == _config.from_environ(exported)
    assert {"EXECUTOR_GUARD": "warn", "EXECUTOR_GUARD_THRESHOLD": "10"}.items() <= (
        _config.to_environ(Config()).items()
    )
    assert Config() == _config.from_environ(_config.to_environ(Config()))


def test_a_blank_variable_leaves_its_option_as_it_is() -> None:
    base = Config(**{name: sample[3] for name, sample in SAMPLES.items()})
    blank = {option.env: " " for option in OPTIONS if option.env is not None}
    assert base == _config.from_environ(blank, base)


def test_the_report_block_holds_the_reported_rows() -> None:
    expected = {
        "mode": "warn",
        "threshold": 10,
        "window": None,
        "stack_depth": 32,
        "ignore": [],
        "app": [],
    }
    assert expected == Config().to_dict()
    assert [option.name for option in OPTIONS if option.reported] == list(expected)


def test_config_refuses_unknown_fields_and_changes() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'treshold'"):
        Config(treshold=3)
    with pytest.raises(AttributeError, match="immutable"):
        Config().threshold = 3  # type: ignore[misc]
    assert Config(ignore=["a"]).ignore == ("a",)


def test_a_boolean_row_is_a_switch_on_the_command_line() -> None:
    switch = _config.Option(
        "sigterm", env=None, flag="--sigterm", parse=_config.parse_bool, default=False, help="h"
    )
    parser = _cli._Parser()
    _cli.add_options(parser, [switch])
    on, off = parser.parse_args(["--sigterm"]), parser.parse_args([])
    expected: dict[str, Any] = {"sigterm": True}
    assert expected == _cli.options_given(on, [switch])
    expected = {}
    assert expected == _cli.options_given(off, [switch])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *((word, True) for word in ("1", "true", "TRUE", "Yes", "on", " On ")),
        *((word, False) for word in ("0", "false", "False", "NO", "off", "oFF")),
    ],
)
def test_boolean_spellings(text: str, expected: bool) -> None:
    """One rule for every switch variable: STRICT, SIGTERM, and EXECUTOR_GUARD itself."""
    assert expected is _config.parse_bool(text, "X")
    assert expected is _config.strict_from_environ({"EXECUTOR_GUARD_STRICT": text})
    on = {"EXECUTOR_GUARD": "1", "EXECUTOR_GUARD_SIGTERM": text}
    assert expected is _config.from_environ(on, config_file=False).sigterm
    # EXECUTOR_GUARD switched on is the log mode; switched off, no guard at all.
    assert _config.mode_from_environ({"EXECUTOR_GUARD": text}) == ("log" if expected else None)


def test_a_blank_or_missing_boolean_variable_is_false() -> None:
    assert _config.strict_from_environ({}) is False
    assert _config.strict_from_environ({"EXECUTOR_GUARD_STRICT": " "}) is False


@pytest.mark.parametrize("text", ["2", "maybe", "enabled", "y", "t"])
def test_an_unknown_boolean_value_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _config.strict_from_environ({"EXECUTOR_GUARD_STRICT": text})
    expected = (
        f"EXECUTOR_GUARD_STRICT: invalid value {text!r} "
        "(expected 0/1, true/false, yes/no or on/off)"
    )
    assert expected == str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        _config.from_environ({"EXECUTOR_GUARD": "1", "EXECUTOR_GUARD_SIGTERM": text})
    assert str(excinfo.value) == expected.replace("_STRICT", "_SIGTERM")
    with pytest.raises(ConfigError) as excinfo:
        _config.mode_from_environ({"EXECUTOR_GUARD": text})
    assert str(excinfo.value).startswith(f"EXECUTOR_GUARD: invalid value {text!r} (expected one of")


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
        _config.parse_bool,
        *(option.env_parse for option in OPTIONS),
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
