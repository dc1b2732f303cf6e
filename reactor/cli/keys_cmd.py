"""`reactor keys`: not built yet."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the `keys` subcommand."""
    p = sub.add_parser("keys", help="(not built yet)")
    p.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    """Say this subcommand does not exist yet."""
    print("reactor keys: not available in this version")
    return 2
