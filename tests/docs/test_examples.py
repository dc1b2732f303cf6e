"""Every code block of README.md and docs/ is checked, so the examples cannot rot.

Python blocks run in a fresh namespace, in a temporary working directory, with ``JR.enqueue``
routed to a :class:`~reactor.testing.CapturingDistributor` (the enqueue checks run, no node is
needed); blocks marked ``<!-- docs: compile-only -->`` are compiled. JSON, YAML, TOML and INI
blocks are parsed. Shell blocks are not run, but each ``reactor ...`` command in them must parse
with the real command line's parser; text and PromQL blocks are not checked.
"""

from __future__ import annotations

import ast
import configparser
import json
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

import reactor as JR
from reactor.cli import build_parser
from reactor.testing import CapturingDistributor
from tests.docs.blocks import CHECKED, ROOT, SOURCES, Block, all_blocks

BLOCKS = [block for block in all_blocks() if block.lang in CHECKED]
MODES = {"run", "compile-only"}


def _compile(block: Block) -> object:
    # Lines before the block keep the reported line numbers those of the Markdown file.
    source = "\n" * block.line + block.code
    return compile(source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _check_python(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = _compile(block)
    if block.mode == "compile-only":
        return
    monkeypatch.chdir(tmp_path)
    saved = JR.config.copy()
    try:
        with CapturingDistributor().routing_facade():
            exec(code, {"__name__": "docs_example"})  # the documentation's own code
    finally:
        for key in saved:
            JR.config[key] = saved[key]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.where)
def test_the_example_works(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert block.mode in MODES, f"{block.where}: unknown mark {block.mode!r}, not one of {MODES}"
    if block.lang == "python":
        _check_python(block, tmp_path, monkeypatch)
    elif block.lang == "json":
        for line in block.code.splitlines():
            json.loads(line)  # the docs show JSON lines
    elif block.lang == "yaml":
        assert list(yaml.safe_load_all(block.code)), block.where
    elif block.lang == "toml":
        tomllib.loads(block.code)
    else:
        configparser.ConfigParser(strict=False, interpolation=None).read_string(block.code)


def test_most_python_examples_run_rather_than_only_compile() -> None:
    python = [block for block in BLOCKS if block.lang == "python"]
    compiled = [block.where for block in python if block.mode == "compile-only"]
    assert len(compiled) * 2 < len(python), f"compile-only: {compiled}"


def test_every_markdown_file_is_read() -> None:
    assert len(SOURCES) > 20 and all(block.lang for block in all_blocks())


def test_getting_started_shows_the_readme_quick_start() -> None:
    def quick_start(path: Path) -> list[str]:
        section = path.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
        return [
            block.code for block in all_blocks() if block.path == path and block.code in section
        ]

    readme, page = ROOT / "README.md", ROOT / "docs" / "getting-started.md"
    assert quick_start(readme) == quick_start(page) and len(quick_start(readme)) == 4


def _reactor_commands() -> list[tuple[str, list[str]]]:
    """Each ``reactor ...`` command of the shell blocks, as argv (optional ``[...]`` parts kept,
    their brackets and ``...`` dropped)."""
    found = []
    for block in all_blocks():
        if block.lang != "sh":
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.split("#")[0].replace("[", " ").replace("]", " "))
                words = [word for word in words if word != "..."]
                if words and words[0].endswith("reactor") and len(words) > 1:
                    found.append((block.where, words[1:]))
    return found


COMMANDS = _reactor_commands()


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[" ".join(c[1][:2]) for c in COMMANDS])
def test_the_shell_example_is_a_valid_command_line(where: str, argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: `reactor {' '.join(argv)}` does not parse ({exc.code})")
