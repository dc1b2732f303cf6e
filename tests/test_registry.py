"""``@job`` options on the registry entry, and duplicate job names refused at load."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from reactor import Backoff, ConfigError, JobRegistry, job
from reactor.jobs.loader import load_jobs


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_job_options_reach_the_registry_entry(tmp_path: Path) -> None:
    write(
        tmp_path / "billing.py",
        "from reactor import Backoff, job\n"
        "@job('charge', max_attempt=5, timeout=30,\n"
        "     backoff=Backoff.exponential(base=1.0, factor=2.0, max_delay=300.0, jitter=0.1))\n"
        "def charge(args): pass\n"
        "@job('plain')\n"
        "def plain(args): pass\n",
    )
    registry = load_jobs(tmp_path)
    charge, plain = registry.get("charge"), registry.get("plain")
    assert charge is not None and plain is not None
    assert charge.max_attempt == 5
    assert charge.timeout == 30.0 and isinstance(charge.timeout, float)
    assert charge.backoff == Backoff.exponential(1.0, 2.0, 300.0, 0.1)
    assert (plain.max_attempt, plain.timeout, plain.backoff) == (None, None, None)
    assert charge.origin.endswith("billing.py:2")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempt": 0}, "max_attempt must be a whole number >= 1, not 0"),
        ({"max_attempt": 2.5}, "max_attempt must be a whole number >= 1"),
        ({"max_attempt": True}, "max_attempt must be a whole number >= 1"),
        ({"timeout": 0}, "timeout must be a finite number > 0, not 0"),
        ({"timeout": -1.0}, "timeout must be a finite number > 0"),
        ({"timeout": math.inf}, "timeout must be a finite number > 0"),
        ({"timeout": "30"}, "timeout must be a number of seconds, not str"),
        ({"backoff": 5}, r"backoff must be Backoff.linear\(...\) or Backoff.exponential"),
    ],
)
def test_bad_options_fail_at_decoration_naming_the_job(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"@job\('charge'\): {message}"):
        job("charge", **options)


def test_a_bad_option_fails_the_job_file_at_load(tmp_path: Path) -> None:
    write(tmp_path / "bad.py", "from reactor import job\n@job('x', timeout=-1)\ndef x(a): pass\n")
    with pytest.raises(ConfigError, match=r"bad.py failed to load: .*timeout must be"):
        load_jobs(tmp_path)


def test_duplicate_names_across_files_name_both_files(tmp_path: Path) -> None:
    body = "from reactor import job\n\n@job('send')\ndef send(args): pass\n"
    first = write(tmp_path / "a_mail.py", body)
    second = write(tmp_path / "sub" / "z_mail.py", body)
    with pytest.raises(ConfigError, match="job 'send' is defined twice") as caught:
        load_jobs(tmp_path)
    assert f"{first}:3" in str(caught.value) and f"{second}:3" in str(caught.value)


def test_duplicate_names_in_one_file_are_refused_too(tmp_path: Path) -> None:
    path = write(
        tmp_path / "jobs.py",
        "from reactor import job\n"
        "@job('send')\ndef send(args): pass\n"
        "@job('send')\ndef send_again(args): pass\n",
    )
    with pytest.raises(ConfigError, match=f"at {path}:2 and at {path}:4"):
        load_jobs(tmp_path)


def test_callbacks_in_other_files_are_still_fine(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "from reactor import job\n@job('one')\ndef one(args): pass\n")
    write(
        tmp_path / "b.py",
        "from reactor import job_callback, job_errback\n"
        "@job_callback('one')\ndef cb(args): pass\n"
        "@job_errback('one')\ndef eb(args): pass\n",
    )
    entry = load_jobs(tmp_path).get("one")
    assert entry is not None and len(entry.callbacks) == len(entry.errbacks) == 1


def test_define_refuses_a_second_definition_and_validates_options() -> None:
    registry = JobRegistry()
    entry = registry.define("j", print, max_attempt=3, backoff=Backoff.linear(1))
    assert (entry.max_attempt, entry.backoff) == (3, Backoff.linear(1))
    with pytest.raises(ConfigError, match="job 'j' is defined twice"):
        registry.define("j", print)
    with pytest.raises(ConfigError, match="job 'k': max_attempt"):
        registry.define("k", print, max_attempt=0)
