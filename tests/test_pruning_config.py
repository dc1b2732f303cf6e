"""The pruning config keys: durations in seconds or with a unit, counts, None, and the
environment variables, each refused with one clear line when wrong."""

from __future__ import annotations

import pytest

from reactor import Config
from reactor.config import parse_duration
from reactor.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(2, 2.0), (0.5, 0.5), ("45", 45.0), ("90s", 90.0), ("30m", 1800.0), ("12h", 43200.0),
     ("7d", 604800.0), ("2w", 1209600.0), ("1.5h", 5400.0), (" 7D ", 604800.0)],
)  # fmt: skip
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "d", "-1", "0", "inf", "nan", True, None, [1]])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="is not a duration: use seconds > 0"):
        parse_duration(text)


def test_keys_default_to_none_and_take_numbers_strings_and_none() -> None:
    config = Config()
    assert config["kept_jobs_ttl"] is None and config["kept_jobs_max"] is None
    config["kept_jobs_ttl"] = "7d"
    config["kept_jobs_max"] = 10_000
    assert config["kept_jobs_ttl"] == 604800.0 and config["kept_jobs_max"] == 10_000
    config["kept_jobs_ttl"] = None
    assert config["kept_jobs_ttl"] is None


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [("kept_jobs_ttl", "soon", "is not a duration"), ("kept_jobs_ttl", -5, "is not a duration"),
     ("kept_jobs_max", 0, "whole number >= 1 or None"),
     ("kept_jobs_max", 2.5, "whole number >= 1 or None")],
)  # fmt: skip
def test_bad_values_are_refused(key: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Config(**{key: value})


def test_environment_variables_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACTOR_KEPT_JOBS_TTL", "12h")
    monkeypatch.setenv("REACTOR_KEPT_JOBS_MAX", "500")
    config = Config()
    assert config["kept_jobs_ttl"] == 43200.0 and config["kept_jobs_max"] == 500
    monkeypatch.setenv("REACTOR_KEPT_JOBS_MAX", "lots")
    with pytest.raises(ConfigError, match="REACTOR_KEPT_JOBS_MAX"):
        Config()
