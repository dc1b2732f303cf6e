"""``reactor bench``: run the benchmark suite of a reactor checkout (``python -m benchmarks``).

``benchmarks/`` is not installed with the package, so it is looked for in the current directory,
then beside the ``reactor`` package (an editable install of a checkout).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from reactor.cli import exits

#: ``reactor bench --help`` where no suite is found (an installed wheel).
WITHOUT_SUITE = """\
usage: reactor bench [ARG ...]

Run reactor's benchmark suite (python -m benchmarks) with ARG passed on to it. The suite is
not installed with the package: run this from the root of a reactor checkout, where
`reactor bench --help` lists the suite's own options (--quick, --only, ...)."""


def add_parser(sub: Any) -> None:
    """Register the ``bench`` subcommand; every argument goes to the suite unparsed."""
    p = sub.add_parser(
        "bench",
        help="run the benchmark suite (from a reactor checkout)",
        description="Run python -m benchmarks; see `reactor bench --help` for its options.",
        prefix_chars="+",  # so --quick, --only ... reach the suite's own parser untouched
        add_help=False,
    )
    p.add_argument("bench_args", nargs="*", metavar="ARG", help="options for python -m benchmarks")
    p.set_defaults(func=run)


def candidate_roots() -> list[Path]:
    """Folders that may hold ``benchmarks/``: the current one, then the checkout of ``reactor``."""
    here = Path.cwd().resolve()
    checkout = Path(__file__).resolve().parent.parent.parent
    return [here] if here == checkout else [here, checkout]


def find_benchmarks() -> ModuleType | None:
    """Import reactor's ``benchmarks`` package from a checkout, or None when there is none."""
    for root in candidate_roots():
        if not (root / "benchmarks" / "__init__.py").is_file():
            continue
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        sys.modules.pop("benchmarks", None)
        module = importlib.import_module("benchmarks")
        if getattr(module, "REACTOR_BENCHMARKS", False):
            return module
    return None


def run(ns: argparse.Namespace) -> int:
    """Run the suite with the given arguments; 2 when it cannot be found."""
    module = find_benchmarks()
    if module is None and {"-h", "--help"} & set(ns.bench_args):
        print(WITHOUT_SUITE)  # an installed wheel has no suite, but --help still answers
        return exits.OK
    if module is None:
        roots = " or ".join(str(r) for r in candidate_roots())
        print(
            f"reactor bench: no reactor benchmarks/ package found in {roots}; the suite is not "
            "installed with the package: run this from the root of a reactor checkout",
            file=sys.stderr,
        )
        return exits.USAGE
    code: int = module.main(list(ns.bench_args))
    return code
