"""The ``reactor`` command: one subcommand module per task (node, demo, monitor, dashboard, keys,
bench).

Logs go to stderr (text, or JSON lines with ``--log-format json``); stdout carries only a
command's own output (tables, ``--json`` documents).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from reactor._version import __version__
from reactor.cli import exits
from reactor.cli.options import (
    CommandParser,
    add_global_options,
    add_to_subcommands,
    log_settings,
)
from reactor.config import from_environment
from reactor.errors import ConfigError
from reactor.ops import logs

_SUBCOMMANDS = ("node", "demo", "monitor", "dashboard", "keys", "bench")

_EPILOG = """\
environment: every option marked [env REACTOR_...] takes its default from that variable, and every
config key KEY from REACTOR_<KEY> (e.g. REACTOR_MAX_ATTEMPT=3). Precedence: the command line, then
the environment, then the default."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand registered by its own module."""
    parser = CommandParser(
        prog="reactor",
        description="Distributed background jobs over ZeroMQ.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"reactor.cli.{name}_cmd")
        module.add_parser(sub)
    add_to_subcommands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reactor`` console script; returns the exit code (see
    :mod:`reactor.cli.exits`).

    ``--help`` and ``--version`` work whatever the environment holds; every other command first
    checks the ``REACTOR_<KEY>`` variables and stops with one line naming a bad one.
    """
    parser = build_parser()
    ns = parser.parse_args(argv)  # --help and --version exit here
    try:
        if not _wants_help(ns):
            from_environment()
        level, fmt = log_settings(ns)
    except ConfigError as exc:
        print(f"reactor: {exc}", file=sys.stderr)
        return exits.USAGE
    logs.configure(level, fmt)  # stderr
    try:
        return int(ns.func(ns))
    except ConfigError as exc:  # a bad value a command found late: still one line
        print(f"reactor {ns.command}: {exc}", file=sys.stderr)
        return exits.USAGE


def _wants_help(ns: argparse.Namespace) -> bool:
    """``reactor bench --help``: the suite's own help, passed on unparsed."""
    return bool({"-h", "--help"} & set(getattr(ns, "bench_args", ())))
