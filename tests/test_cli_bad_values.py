"""Issue 22's raw tracebacks: a bad environment variable or Redis URL is one line naming it,
while ``--help`` and ``--version`` work whatever the environment holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reactor import ConfigError, NodeNameTaken
from reactor.cli import exits


def reactor_cli(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "reactor", *argv],
        capture_output=True, text=True, timeout=60, env={**clean, **env},
    )  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["node", "--help"], ["monitor", "-h"]])
def test_help_and_version_work_with_a_bad_environment(argv: list[str]) -> None:
    done = reactor_cli(*argv, REACTOR_MAX_ATTEMPT="three")
    assert done.returncode == exits.OK, done.stderr
    assert done.stderr == "" and ("usage: reactor" in done.stdout or "reactor " in done.stdout)


@pytest.mark.parametrize(
    "argv",
    [
        ["monitor", "nodes"],
        ["node", "--name", "w1", "--distributor", "127.0.0.1:1"],
        ["keys", "generate", "."],
    ],
)
def test_other_commands_name_the_bad_variable(argv: list[str]) -> None:
    done = reactor_cli(*argv, REACTOR_MAX_ATTEMPT="three")
    assert done.returncode == exits.USAGE
    line = one_line(done)
    assert "REACTOR_MAX_ATTEMPT" in line and "'three'" in line, line


def test_importing_reactor_with_a_bad_environment_fails_at_first_use() -> None:
    code = (
        "import reactor as JR\n"
        "uses = (lambda: JR.config['max_attempt'], lambda: JR.start_distributor('127.0.0.1', 0))\n"
        "for use in uses:\n"
        "    try:\n"
        "        use()\n"
        "    except JR.ConfigError as exc:\n"
        "        print(exc)\n"
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**env, "REACTOR_MAX_ATTEMPT": "three"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert len(printed) == 2 and all("REACTOR_MAX_ATTEMPT" in line for line in printed), printed


BAD_URL = [["monitor", "--redis", "http://x", "nodes"], ["dashboard", "--redis", "http://x"]]


@pytest.mark.parametrize("command", BAD_URL)
def test_a_bad_redis_url_is_one_line_naming_the_option(command: list[str]) -> None:
    done = reactor_cli(*command)
    assert done.returncode == exits.USAGE
    line = one_line(done)
    assert line.startswith(f"reactor {command[0]}: --redis: bad Redis URL 'http://x'"), line


def test_exit_codes_come_from_one_documented_table() -> None:
    """Every subcommand returns a constant of reactor.cli.exits (no bare numbers), and
    docs/reference/exit-codes.md lists each of them."""
    root = Path(__file__).resolve().parent.parent
    bare = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted((root / "reactor" / "cli").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\breturn \d+\b|_exit\(\d+\)|SystemExit\(\d+\)", line)
    ]
    assert not bare, "use reactor.cli.exits:\n" + "\n".join(bare)
    doc = (root / "docs" / "reference" / "exit-codes.md").read_text()
    for name in ("OK", "FAILURE", "USAGE"):
        assert f"| {getattr(exits, name)}    | `{name}`" in doc, name
    assert exits.for_error(NodeNameTaken("x")) == exits.FAILURE == 1
    assert exits.for_error(ConfigError("x")) == exits.USAGE == 2
