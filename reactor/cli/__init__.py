"""The ``reactor`` command: one subcommand module per task (node, demo, monitor, keys, bench)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from reactor._version import __version__

_SUBCOMMANDS = ("node", "demo", "monitor", "keys", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered by its own module."""
    parser = argparse.ArgumentParser(
        prog="reactor", description="Distributed background jobs over ZeroMQ."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"reactor.cli.{name}_cmd")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reactor`` console script; returns the exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=ns.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(ns.func(ns))
