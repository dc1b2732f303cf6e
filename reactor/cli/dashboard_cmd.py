"""``reactor dashboard``: serve the web dashboard until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from reactor.cli import exits
from reactor.cli.options import env_help, env_int, from_env
from reactor.config import DEFAULTS
from reactor.errors import ConfigError


def add_parser(sub: Any) -> None:
    """Register the ``dashboard`` subcommand."""
    p = sub.add_parser(
        "dashboard",
        help="serve the web dashboard",
        description=(
            "Serve a web view of announced distributors, their nodes and the jobs stored in "
            "Redis, with retry and destroy for failed jobs."
        ),
    )
    p.add_argument(
        "--redis",
        default=from_env("--redis") or DEFAULTS["redis_url"],
        metavar="URL",
        help=env_help("--redis", f"the Redis URL (default {DEFAULTS['redis_url']})"),
    )
    p.add_argument(
        "--host",
        default=from_env("--host") or "127.0.0.1",
        help=env_help("--host", "the address to bind (default 127.0.0.1: this machine only)"),
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=env_help("--port", "the TCP port (default 8000)"),
    )
    p.add_argument(
        "--read-only",
        action="store_true",
        default=from_env("--read-only") in ("1", "true", "yes"),
        help=env_help("--read-only", "show only: no retry or destroy"),
    )
    p.add_argument(
        "--password",
        default=from_env("--password"),
        help=env_help("--password", "require HTTP basic auth with this password (any user)"),
    )
    p.add_argument("--prefix", default="reactor", help="the nodes' storage key prefix")
    p.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    """Serve until a signal; 0 on a clean stop."""
    try:
        from reactor.ops.dashboard import Dashboard
    except ImportError as exc:  # aiohttp and jinja2 come with the dashboard extra
        print(
            f"reactor dashboard: {exc}; install it with: pip install 'reactor-jobs[dashboard]'",
            file=sys.stderr,
        )
        return exits.USAGE
    port = ns.port if ns.port is not None else env_int("--port")
    try:
        dashboard = Dashboard(
            ns.redis,
            host=ns.host,
            port=8000 if port is None else port,
            read_only=ns.read_only,
            password=ns.password,
            prefix=ns.prefix,
        )
        return asyncio.run(_serve(dashboard))
    except ConfigError as exc:  # a bad --redis URL, found when it connects
        print(f"reactor dashboard: --redis: {exc}", file=sys.stderr)
        return exits.USAGE


async def _serve(dashboard: Any) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await dashboard.start()
    except OSError as exc:
        print(f"reactor dashboard: cannot listen on {dashboard.url}: {exc}", file=sys.stderr)
        return exits.USAGE
    print(f"reactor dashboard on {dashboard.url}", flush=True)
    try:
        await stop.wait()
    finally:
        await dashboard.stop()
    return exits.OK
