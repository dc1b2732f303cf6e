"""The fenced code blocks of README.md and docs/, each with where it is and how it is checked.

A block runs unless the line right above its fence says otherwise (see docs/contributing.md):
``<!-- docs: compile-only -->`` (Python that needs a running node, Redis or files: compiled only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
#: Every Markdown file whose examples are checked.
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: Languages that are read by a parser of their own; the rest (sh, text, promql) are not run.
CHECKED = {"python", "json", "yaml", "toml", "ini"}

_FENCE = re.compile(
    r"^(?P<indent> *)(?P<ticks>`{3,})(?P<lang>[\w+-]*)[^\n]*\n"
    r"(?P<code>.*?)^(?P=indent)(?P=ticks)[ \t]*$",
    re.M | re.S,
)
_MARK = re.compile(r"<!-- docs: ([\w-]+)[^>]*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its file, first line, language, code and mode (run, compile-only)."""

    path: Path
    line: int
    lang: str
    code: str
    mode: str

    @property
    def where(self) -> str:
        """``docs/guides/jobs.md:42``, for test ids and failure messages."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    text = path.read_text()
    found = []
    for fence in _FENCE.finditer(text):
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        indent = len(fence.group("indent"))
        code = "\n".join(line[indent:] for line in fence.group("code").splitlines())
        found.append(
            Block(
                path,
                text.count("\n", 0, fence.start()) + 1,
                fence.group("lang") or "text",
                code + "\n",
                mark.group(1) if mark else "run",
            )
        )
    return found


def all_blocks() -> list[Block]:
    """Every fenced block of every checked Markdown file."""
    return [block for path in SOURCES for block in blocks(path)]
