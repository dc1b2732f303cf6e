"""The simulation runs production's start rule, not a copy of it.

Which job starts when (priorities, held links, unknown names, capacity, write-ahead) is
:meth:`reactor.core.node.NodeCore.start_next`; a copy of any of it in tests/sim would make the
seeds prove the copy. This test fails when such logic comes back: a call of the core's queue
internals, or a comparison against a capacity or a running count.
"""

from __future__ import annotations

import ast
from pathlib import Path

SIM = Path(__file__).parent

#: Core calls that are parts of the start rule; the simulation calls start_next/start_batch.
FORBIDDEN_CALLS = {"next_ready", "wait_slot", "begin", "make_ready", "release_held"}
#: Names a start decision reads; the simulation may pass them on, never compare them.
FORBIDDEN_COMPARED = {"capacity", "running", "slot_wait", "held", "ranked", "ready"}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def start_logic(source: str, filename: str) -> list[str]:
    """Where ``source`` decides job starts itself, as ``file:line: what`` lines."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and _name(node.func) in FORBIDDEN_CALLS:
            found.append(f"{filename}:{node.lineno}: calls {_name(node.func)}()")
        elif isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                for inner in ast.walk(side):
                    if isinstance(inner, ast.expr) and _name(inner) in FORBIDDEN_COMPARED:
                        found.append(f"{filename}:{node.lineno}: compares {_name(inner)}")
    return found


def test_the_simulation_holds_no_start_logic() -> None:
    found: list[str] = []
    for path in sorted(SIM.glob("*.py")):
        if path.name != Path(__file__).name:
            found += start_logic(path.read_text(), path.name)
    assert not found, "start logic belongs in NodeCore.start_next:\n" + "\n".join(found)


def test_the_check_finds_a_copy_of_the_rule() -> None:
    copy = (
        "while core.running < node.capacity:\n"
        "    job = core.next_ready(now)\n"
        "    core.begin(job, wall)\n"
    )
    assert len(start_logic(copy, "copy.py")) == 4
