"""Issue 22's rough edges of `reactor node`: a failed start says one line and exits by the table
in reactor.cli.exits, never with asyncio's "Task was destroyed but it is pending!"; wrong values
(--capacity 0, --distributor :5000, a busy --metrics-port) are refused naming the option."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.cli import exits
from reactor.testing.support import NodeProcess, async_wait_until

from .conftest import FAST, JOBS

PENDING = "Task was destroyed but it is pending"


def reactor_cli(
    *argv: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "reactor", *argv],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
    )  # fmt: skip


def assert_one_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    err = done.stderr
    assert done.returncode == code, err
    assert PENDING not in err and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("reactor node:")]
    assert len(errors) == 1, err
    for word in words:
        assert word in errors[0], err
    return errors[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def _jobs(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    for name, text in files.items():
        (folder / f"{name}.py").write_text(text)
    return folder


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("syntax", ("broken.py",)),
        ("missing", ("does not exist",)),
        ("duplicate", ("defined twice",)),
        ("metrics", ("--metrics-port", "metrics", "in use")),
    ],
)
def test_a_failed_start_is_one_line_without_a_pending_task(
    tmp_path: Path, busy_port: int, case: str, words: tuple[str, ...]
) -> None:
    good = 'from reactor import job\n\n@job("greet")\ndef greet(name):\n    return {}\n'
    folders = {
        "syntax": lambda: _jobs(tmp_path, broken="def broken(:\n"),
        "missing": lambda: tmp_path / "nowhere",
        "duplicate": lambda: _jobs(tmp_path, a=good, b=good),
        "metrics": lambda: _jobs(tmp_path, a=good),
    }
    argv = ["node", "--name", "w1", "--distributor", "127.0.0.1:1", "--jobs", str(folders[case]())]
    if case == "metrics":
        argv += ["--metrics-port", str(busy_port)]
    assert_one_line(reactor_cli(*argv), exits.USAGE, *words)


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--capacity", "0"], ("--capacity", ">= 1", "not 0")),
        (["--capacity", "-3"], ("--capacity", "not -3")),
        (["--distributor", ":5000"], ("--distributor", "HOST:PORT", "':5000'")),
        (["--distributor", "h:"], ("--distributor", "'h:'")),
    ],
)
def test_wrong_values_are_refused_naming_the_option(
    option: list[str], words: tuple[str, ...]
) -> None:
    argv = ["node", "--name", "w1", "--jobs", str(JOBS), "--distributor", "127.0.0.1:1", *option]
    assert_one_line(reactor_cli(*argv), exits.USAGE, *words)


async def test_a_taken_name_exits_1_without_a_pending_task(
    distributor: Distributor, tmp_path: Path
) -> None:
    settings = {**FAST, "heartbeat_timeout": 5.0}
    with NodeProcess("w1", [distributor.address], jobs=JOBS, settings=settings,
                     log_path=tmp_path / "first.log"):  # fmt: skip
        await async_wait_until(lambda: distributor.node_alive("w1"), 15)
        argv = ["node", "--name", "w1", "--jobs", str(JOBS), "--distributor", distributor.address]
        for key, value in settings.items():
            argv += ["--set", f"{key}={value}"]
        done = await asyncio.to_thread(reactor_cli, *argv)
    assert_one_line(done, exits.FAILURE, "NodeNameTaken")


async def test_the_api_refuses_the_same_values(busy_port: int) -> None:
    from reactor import ConfigError, Node
    from reactor.errors import MetricsPortError

    distributor = Distributor("127.0.0.1", 0, metrics_port=busy_port)
    with pytest.raises(MetricsPortError, match=f"metrics on 127.0.0.1:{busy_port}.*metrics_port="):
        await distributor.start()
    await distributor.stop()  # nothing was opened: nothing to release, nothing to report
    with pytest.raises(ConfigError, match="node_capacity.*>= 1, not 0"):
        Node("w1", distributors=["127.0.0.1:5000"], capacity=0)
    with pytest.raises(ValueError, match="HOST:PORT"):
        Node("w1", distributors=[":5000"])
