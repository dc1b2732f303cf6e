"""Configuration from REACTOR_<KEY> variables, ``--set`` parsing, and the CLI's options from the
environment; precedence: code / command line > environment > default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.cli import build_parser
from reactor.cli.options import log_settings
from reactor.config import DEFAULTS, Config, apply_settings, env_name, from_environment, parse_value
from reactor.errors import ConfigError
from reactor.testing.support import async_wait_until
from tests.conftest import JOBS


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No REACTOR_* variable from the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("REACTOR_"):
            monkeypatch.delenv(name)


def test_every_key_round_trips_through_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = {
        bool: ("true", True),
        int: ("7", 7),
        float: ("2.5", 2.5),
        str: ("somewhere", "somewhere"),
    }
    #: Keys whose value is not typed after their default (None: unset).
    overrides = {
        "result_store": ("redis://db:6379/2", "redis://db:6379/2"),
        "limits_store": ("redis://db:6379/3", "redis://db:6379/3"),
        "kept_jobs_ttl": ("7d", 604800.0),
        "kept_jobs_max": ("500", 500),
    }
    for key, default in DEFAULTS.items():
        text, value = overrides.get(key) or samples[type(default)]
        monkeypatch.setenv(env_name(key), text)
        assert Config()[key] == value, key
        monkeypatch.delenv(env_name(key))
        assert Config()[key] == default, key


def test_names_and_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_name("always_use_specified_node") == "REACTOR_ALWAYS_USE_SPECIFIED_NODE"
    monkeypatch.setenv("REACTOR_MAX_ATTEMPT", "3")
    monkeypatch.setenv("REACTOR_ALWAYS_USE_SPECIFIED_NODE", "TRUE")
    monkeypatch.setenv("REACTOR_REMOVE_DONE_JOBS", "no")
    monkeypatch.setenv("REACTOR_RETRY_MULTIPLIER", "0.5")  # an int default takes a fraction
    monkeypatch.setenv("REACTOR_REDIS_URL", "redis://db:6379/3")
    monkeypatch.setenv("REACTOR_SIM_SEEDS", "12")  # not a config key: ignored
    monkeypatch.setenv("REACTOR_HEARTBEAT_TIMEOUT", "")  # empty: unset
    config = Config()
    assert config["max_attempt"] == 3 and config["always_use_specified_node"] is True
    assert config["remove_done_jobs"] is False and config["retry_multiplier"] == 0.5
    assert config["redis_url"] == "redis://db:6379/3"
    assert config["heartbeat_timeout"] == DEFAULTS["heartbeat_timeout"]
    assert from_environment({"REACTOR_MAX_ATTEMPT": "4"}) == {"max_attempt": 4}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("REACTOR_MAX_ATTEMPT", "three", "'three' is not a valid int"),
        ("REACTOR_MAX_ATTEMPT", "0", "config['max_attempt'] must be a whole number >= 1"),
        ("REACTOR_MAX_ATTEMPT", "2.5", "config['max_attempt'] must be a whole number >= 1"),
        ("REACTOR_LOG_JOB_PROCESSING", "maybe", "'maybe' is not a valid bool"),
        ("REACTOR_HEARTBEAT_TIMEOUT", "-1", "config['heartbeat_timeout'] must be > 0"),
        ("REACTOR_NODE_LOST_AFTER", "soon", "'soon' is not a valid float"),
    ],
)  # fmt: skip
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, text: str, message: str
) -> None:
    monkeypatch.setenv(name, text)
    with pytest.raises(ConfigError) as caught:
        Config()
    assert str(caught.value).startswith(f"environment variable {name}: {message}")


def test_precedence_code_over_environment_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACTOR_MAX_ATTEMPT", "3")
    assert Config()["max_attempt"] == 3
    assert Config(max_attempt=5)["max_attempt"] == 5  # code wins
    config = Config()
    config["max_attempt"] = 6
    assert config["max_attempt"] == 6
    del config["max_attempt"]  # back to the environment's value, not the default
    assert config["max_attempt"] == 3
    config["max_attempt"] = 7
    config.reset()
    assert config["max_attempt"] == 3
    snapshot = config.copy()
    monkeypatch.setenv("REACTOR_MAX_ATTEMPT", "9")  # a copy does not read the environment again
    assert snapshot["max_attempt"] == 3 and Config()["max_attempt"] == 9
    apply_settings(config, ["max_attempt=4"])  # --set wins over the environment
    assert config["max_attempt"] == 4


def test_set_parsing_is_the_same_function() -> None:
    config = Config()
    apply_settings(config, ["always_use_specified_node=yes", "heartbeat_interval=0.25"])
    assert config["always_use_specified_node"] is True and config["heartbeat_interval"] == 0.25
    with pytest.raises(ConfigError, match="--set takes KEY=VALUE"):
        apply_settings(config, ["max_attempt"])
    with pytest.raises(ConfigError, match="unknown config key 'nope'; valid keys: "):
        apply_settings(config, ["nope=1"])
    with pytest.raises(ConfigError, match="--set max_attempt: 'x' is not a valid int"):
        apply_settings(config, ["max_attempt=x"])
    assert parse_value("job_directory", "jobs", source="x") == "jobs"


# -- the command line's own options ---------------------------------------------------------


def test_node_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACTOR_NAME", "w1")
    monkeypatch.setenv("REACTOR_DISTRIBUTOR", "10.0.0.1:5000, 10.0.0.2:5000")
    monkeypatch.setenv("REACTOR_STORAGE", "redis")
    monkeypatch.setenv("REACTOR_JOBS", "/srv/jobs")
    ns = build_parser().parse_args(["node"])  # --name and --distributor not required now
    assert (ns.name, ns.storage, ns.jobs, ns.distributor) == ("w1", "redis", "/srv/jobs", None)
    from reactor.cli.options import env_list

    assert env_list("--distributor") == ["10.0.0.1:5000", "10.0.0.2:5000"]
    ns = build_parser().parse_args(
        ["node", "--name", "w2", "--distributor", "h:1", "--storage", "memory"]
    )
    assert (ns.name, ns.distributor, ns.storage) == ("w2", ["h:1"], "memory")  # argument wins


def test_node_without_name_and_no_variable_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "--distributor", "h:1"])
    assert "--name" in capsys.readouterr().err


def test_bad_capacity_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reactor.cli import main

    monkeypatch.setenv("REACTOR_CAPACITY", "lots")
    assert main(["node", "--name", "w", "--distributor", "127.0.0.1:1"]) == 2
    assert "REACTOR_CAPACITY: 'lots' is not an int" in capsys.readouterr().err


def test_help_names_the_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in ("REACTOR_NAME", "REACTOR_DISTRIBUTOR", "REACTOR_STORAGE", "REACTOR_JOBS",
                 "REACTOR_CAPACITY", "REACTOR_LOG_LEVEL", "REACTOR_LOG_FORMAT"):  # fmt: skip
        assert name in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "--log-format", "json", "monitor", "nodes"],
        ["monitor", "--log-level", "DEBUG", "--log-format", "json", "nodes"],
        ["monitor", "nodes", "--log-level", "DEBUG", "--log-format", "json"],
        ["--log-format", "json", "monitor", "--log-level", "DEBUG", "nodes"],
    ],
)
def test_log_options_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert log_settings(build_parser().parse_args(argv)) == ("DEBUG", "json")


def test_log_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = build_parser().parse_args
    assert log_settings(parse(["monitor", "nodes"])) == ("WARNING", "text")
    assert log_settings(parse(["node", "--name", "n", "--distributor", "h:1"])) == ("INFO", "text")
    monkeypatch.setenv("REACTOR_LOG_LEVEL", "error")
    monkeypatch.setenv("REACTOR_LOG_FORMAT", "json")
    assert log_settings(parse(["monitor", "nodes"])) == ("ERROR", "json")
    assert log_settings(parse(["--log-level", "INFO", "monitor", "nodes"])) == ("INFO", "json")
    monkeypatch.setenv("REACTOR_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="REACTOR_LOG_FORMAT: 'xml' is not one of text, json"):
        log_settings(parse(["monitor", "nodes"]))


async def test_a_node_configured_only_by_the_environment_connects(
    distributor: Distributor, tmp_path: Path
) -> None:
    """What a container does: ``reactor node`` with no arguments but REACTOR_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    env.update({
        "REACTOR_NAME": "env-node",
        "REACTOR_DISTRIBUTOR": f"127.0.0.1:1,{distributor.address}",  # a dead one, then ours
        "REACTOR_JOBS": str(JOBS),
        "REACTOR_HEARTBEAT_INTERVAL": "0.2",
        "REACTOR_LOG_FORMAT": "json",
    })  # fmt: skip
    log = tmp_path / "node.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reactor", "node"], stdout=out, stderr=out, env=env
        )
    try:
        await async_wait_until(lambda: distributor.node_alive("env-node"), 15.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    entries = [json.loads(line) for line in log.read_text().splitlines()]  # JSON, line by line
    assert entries and all(e["level"] in ("INFO", "WARNING") for e in entries)
    assert any(e["logger"].startswith("reactor") for e in entries)
