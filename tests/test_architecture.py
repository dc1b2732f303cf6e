"""The architecture map (docs/architecture.md) names every module of the package, and nothing
that is gone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reactor"
#: Modules every package has, which the map need not repeat.
IMPLIED = {"__init__.py"}


def _map_entries() -> set[str]:
    """Paths (``wire/protocol.py``, ``ops/dashboard/app.py``) the map lists, by indentation."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```text\nreactor/\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```text reactor/ ...``` map"
    entries: set[str] = set()
    folders: list[str] = []
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2 - 1
        name = line.split()[0]
        folders = folders[:depth]
        path = "/".join([*folders, name.rstrip("/")])
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
            entries.add(path + "/")
        else:
            entries.add(path)
    return entries


def _package_entries() -> set[str]:
    entries: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if path.name not in IMPLIED:
            entries.add(rel.as_posix())
        for parent in rel.parents:
            if parent != Path("."):
                entries.add(parent.as_posix() + "/")
    return entries


def test_the_map_names_every_module() -> None:
    missing = _package_entries() - _map_entries()
    assert not missing, f"docs/architecture.md's map lacks: {sorted(missing)}"


def test_the_map_names_no_module_that_is_gone() -> None:
    gone = {e for e in _map_entries() - _package_entries() if Path(e).name not in IMPLIED}
    assert not gone, f"docs/architecture.md's map names what does not exist: {sorted(gone)}"


#: STYLE.md: modules of 100-400 lines, none over this; past it a module holds two nouns.
MAX_MODULE_LINES = 500


def test_no_module_is_over_the_limit() -> None:
    sizes = {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    over = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines (split them by noun): {over}"


def test_no_private_name_is_imported_across_modules() -> None:
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reactor"):
                found += [
                    f"{path.relative_to(ROOT)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert not found, "make these public or move them where they are used:\n" + "\n".join(found)
