"""reactor's benchmark suite: ``python -m benchmarks`` (or ``reactor bench`` from a checkout).

Not part of the installed package. Importing it has no side effects; :func:`main` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Lets ``reactor bench`` tell this package from another one named ``benchmarks``.
REACTOR_BENCHMARKS = True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks with command-line ``argv``; returns the exit code."""
    from benchmarks.cli import main as run

    return run(argv)
