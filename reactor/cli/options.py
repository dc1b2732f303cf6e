"""Options every ``reactor`` command shares (``--log-level``, ``--log-format``), and option
defaults read from ``REACTOR_<OPTION>`` environment variables.

Precedence, highest first: the option on the command line, then its environment variable, then
its default. The global options are accepted before the subcommand and after it
(``reactor --log-level DEBUG node ...`` and ``reactor node --log-level DEBUG ...``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, Final

from reactor.config import ENV_PREFIX
from reactor.errors import ConfigError

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS: Final = ("text", "json")


def env_var(option: str) -> str:
    """The variable for a long option: ``--log-level`` -> ``REACTOR_LOG_LEVEL``."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def from_env(option: str) -> str | None:
    """The option's value from its environment variable, or None (unset or empty)."""
    return os.environ.get(env_var(option)) or None


def env_help(option: str, text: str) -> str:
    """``text`` with the option's environment variable named, for ``--help``."""
    return f"{text} [env {env_var(option)}]"


def env_int(option: str) -> int | None:
    """An integer option's value from its environment variable, or None.

    Raises:
        ConfigError: the variable is set to something else than a whole number; names it.
    """
    text = from_env(option)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"environment variable {env_var(option)}: {text!r} is not an int"
        ) from None


def env_list(option: str) -> list[str] | None:
    """A repeatable option's values from its comma-separated environment variable, or None."""
    text = from_env(option)
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    return items or None


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level`` and ``--log-format`` to ``parser``.

    Their argparse default is SUPPRESS, so a subcommand's copy of the option never overwrites a
    value given before the subcommand; :func:`log_settings` fills in the defaults.
    """
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help=env_help("--log-level", "log verbosity (default: INFO for `node`, else WARNING)"),
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help=env_help("--log-format", "log lines as text or as JSON objects (default: text)"),
    )


class CommandParser(argparse.ArgumentParser):
    """An argument parser that keeps the subcommand groups it makes.

    argparse lists a parser's subcommands only in its private ``_actions``; this parser records
    what :meth:`add_subparsers` returns instead, so :func:`add_to_subcommands` can reach every
    subcommand. argparse makes subcommand parsers of their parent's class, so they record theirs
    too, at every depth.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subcommand_groups: list[Any] = []

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> argparse.Namespace:
        """As :meth:`argparse.ArgumentParser.parse_args`, keeping the arguments as ``argv``
        (``reactor node --processes N`` gives them to its node processes)."""
        ns: argparse.Namespace = super().parse_args(args, namespace)
        ns.argv = list(sys.argv[1:] if args is None else args)
        return ns

    def add_subparsers(self, **kwargs: Any) -> Any:
        """As :meth:`argparse.ArgumentParser.add_subparsers`, remembering the group."""
        group = super().add_subparsers(**kwargs)
        self.subcommand_groups.append(group)
        return group


def add_to_subcommands(parser: CommandParser) -> None:
    """Add the global options to every subcommand parser under ``parser``, at every depth.

    A parser that does not take ``-`` options (``reactor bench`` passes its arguments on
    untouched) is left alone.
    """
    for group in parser.subcommand_groups:
        for child in dict.fromkeys(group.choices.values()):
            if "-" not in child.prefix_chars:
                continue
            add_global_options(child)
            add_to_subcommands(child)


def log_settings(ns: argparse.Namespace) -> tuple[str, str]:
    """``(level, format)`` from the options, then the environment, then the defaults.

    Raises:
        ConfigError: a bad ``REACTOR_LOG_LEVEL`` or ``REACTOR_LOG_FORMAT``; names the variable.
    """
    default_level = "INFO" if getattr(ns, "command", None) == "node" else "WARNING"
    level = getattr(ns, "log_level", None)
    if level is None:
        level = (from_env("--log-level") or default_level).upper()
        if level not in LOG_LEVELS:
            raise ConfigError(
                f"environment variable {env_var('--log-level')}: {level!r} is not one of "
                f"{', '.join(LOG_LEVELS)}"
            )
    fmt = getattr(ns, "log_format", None)
    if fmt is None:
        fmt = (from_env("--log-format") or "text").lower()
        if fmt not in LOG_FORMATS:
            raise ConfigError(
                f"environment variable {env_var('--log-format')}: {fmt!r} is not one of "
                f"{', '.join(LOG_FORMATS)}"
            )
    return level, fmt
