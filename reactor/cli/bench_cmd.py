"""`reactor bench`: not built yet."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the `bench` subcommand."""
    p = sub.add_parser("bench", help="(not built yet)")
    p.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    """Say this subcommand does not exist yet."""
    print("reactor bench: not available in this version")
    return 2
