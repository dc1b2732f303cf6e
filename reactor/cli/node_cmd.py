"""``reactor node``: run a worker node until SIGTERM or Ctrl-C, then stop gracefully."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from typing import Any

from reactor.app.runtime import new_event_loop
from reactor.cli import exits
from reactor.cli.options import env_help, env_int, env_list, from_env
from reactor.cli.supervisor import add_processes_argument, maybe_supervise
from reactor.config import DEFAULTS, Config, apply_settings
from reactor.errors import ConfigError, MetricsPortError, ReactorError
from reactor.node.driver import Node

log = logging.getLogger("reactor.cli")


def add_parser(sub: Any) -> None:
    """Register the ``node`` subcommand."""
    p = sub.add_parser(
        "node",
        help="run a worker node",
        description="Run a node that takes jobs from one or more distributors.",
    )
    name = from_env("--name")
    p.add_argument(
        "--name",
        required=name is None,
        default=name,
        help=env_help("--name", "the node's name (jobs pin to it with node=)"),
    )
    p.add_argument(
        "--distributor",
        action="append",
        default=None,  # not the env list: argparse would append to it instead of replacing it
        metavar="HOST:PORT",
        help=env_help(
            "--distributor",
            "a distributor to connect to (repeatable; in the variable: comma-separated); "
            "--distributor or --discover (or both) is required",
        ),
    )
    p.add_argument(
        "--discover",
        default=from_env("--discover"),
        metavar="URL",
        help=env_help(
            "--discover",
            "a Redis URL where distributors announce themselves (announce=): dial every live "
            "one and follow them as they come and go",
        ),
    )
    p.add_argument(
        "--storage",
        default=from_env("--storage") or "memory",
        help=env_help("--storage", "memory (default), redis (uses redis_url) or a redis://... URL"),
    )
    p.add_argument(
        "--jobs",
        default=from_env("--jobs"),
        metavar="DIR",
        help=env_help("--jobs", "job directory (default: config job_directory, 'reactor_jobs')"),
    )
    p.add_argument(
        "--capacity",
        type=int,
        default=None,
        help=env_help("--capacity", "jobs taken at once (default: config node_capacity)"),
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help=env_help("--metrics-port", "serve Prometheus metrics at http://HOST:PORT/metrics"),
    )
    p.add_argument(
        "--metrics-host",
        default=from_env("--metrics-host") or "127.0.0.1",
        metavar="HOST",
        help=env_help("--metrics-host", "the address the metrics server binds (127.0.0.1)"),
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "set a config key (repeatable; overrides its REACTOR_<KEY> variable): "
            f"{', '.join(sorted(DEFAULTS))}"
        ),
    )
    p.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="DIR",
        help=(
            "put DIR on sys.path, so job files can import your project's code (repeatable; the "
            "working directory is always on it, as with python -m)"
        ),
    )
    add_curve_arguments(p)
    add_processes_argument(p)
    p.set_defaults(func=run)


def extend_import_path(dirs: list[str]) -> None:
    """Make job files able to import the user's code: ``--path`` dirs first, then the working
    directory, as ``python -m`` puts it first (a console script puts only its own directory)."""
    wanted = [os.path.abspath(d) for d in dirs] + [os.getcwd()]
    for entry in reversed(wanted):
        if entry not in sys.path:
            sys.path.insert(0, entry)


def add_curve_arguments(p: argparse.ArgumentParser) -> None:
    """The CURVE options a node takes (see ``reactor keys``)."""
    p.add_argument("--curve-secret", metavar="FILE", help="this node's CURVE secret key file")
    p.add_argument(
        "--curve-server-key", metavar="FILE", help="the distributor's CURVE public key file"
    )


def storage_spec(text: str) -> str:
    """The CLI's storage names mapped to the API's."""
    return {"memory": "memory_storage", "redis": "redis_storage"}.get(text, text)


def curve_client(ns: argparse.Namespace) -> Any:
    """Build the node's CURVE settings from the CLI options, or None."""
    if not (ns.curve_secret or ns.curve_server_key):
        return None
    from reactor.net.security import CurveClient

    if not (ns.curve_secret and ns.curve_server_key):
        raise ConfigError("CURVE needs both --curve-secret and --curve-server-key")
    return CurveClient.from_files(ns.curve_secret, ns.curve_server_key)


def node_options(ns: argparse.Namespace) -> dict[str, Any]:
    """The node's settings from the options (then their variables), checked.

    Raises:
        ConfigError: a bad value; the message names the option.
    """
    distributors = ns.distributor or env_list("--distributor") or []
    if not distributors and not ns.discover:
        raise ConfigError("give --distributor HOST:PORT (repeatable) or --discover URL")
    for address in distributors:
        host, sep, port = address.rpartition(":")
        if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--distributor takes HOST:PORT (e.g. 127.0.0.1:5000), not {address!r}"
            )
    capacity = ns.capacity if ns.capacity is not None else env_int("--capacity")
    if capacity is not None and capacity < 1:
        raise ConfigError(f"--capacity must be a whole number >= 1, not {capacity}")
    port = ns.metrics_port if ns.metrics_port is not None else env_int("--metrics-port")
    if port is not None and not 0 <= port < 65536:
        raise ConfigError(f"--metrics-port must be a port number (0-65535), not {port}")
    return {"distributors": distributors, "capacity": capacity, "metrics_port": port}


def run(ns: argparse.Namespace) -> int:
    """Run the node until a signal; 0 on a graceful stop (exit codes: :mod:`reactor.cli.exits`)."""
    supervised = maybe_supervise(ns)  # --processes N: a supervisor of N node processes
    if supervised is not None:
        return supervised
    extend_import_path(ns.path)
    try:
        config = Config()  # defaults, then REACTOR_<KEY> variables, then --set
        apply_settings(config, ns.set)
        node = Node(
            ns.name,
            discover=ns.discover,
            storage=storage_spec(ns.storage),
            job_directory=ns.jobs,
            config=config,
            curve=curve_client(ns),
            metrics_host=ns.metrics_host,
            **node_options(ns),
        )
    except (ReactorError, ValueError) as exc:
        print(f"reactor node: {exc}", file=sys.stderr)
        return exits.USAGE
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_serve(node))
    except MetricsPortError as exc:
        print(f"reactor node: --metrics-port {exc.port}: {exc}", file=sys.stderr)
        return exits.USAGE
    except ReactorError as exc:
        print(f"reactor node: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exits.for_error(exc)
    finally:
        loop.close()


async def _serve(node: Node) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(sig: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info(
                "node %s: %s received; finishing running jobs (signal again to exit now)",
                node.name,
                signal.Signals(sig).name,
            )
            stop.set()
        else:
            log.warning("node %s: second signal; exiting now", node.name)
            os._exit(exits.FAILURE)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    signalled = asyncio.ensure_future(stop.wait())
    try:
        if not await _started(node, signalled):
            log.info("node %s: stopped during its start", node.name)
            return exits.OK
        assert node.stopped is not None
        # What the start made (modules, job files, sockets) lives as long as the process: out
        # of the collector's sight, a full collection walks only the jobs' objects, not the
        # whole heap, and a job's start waits less behind it (CPython's gc.freeze).
        gc.collect()  # start-up garbage first: frozen objects are never freed
        gc.freeze()
        ended = asyncio.ensure_future(node.stopped.wait())
        await asyncio.wait({signalled, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        await node.stop()
    finally:
        signalled.cancel()  # also when the start failed: a pending task left behind is logged
        with contextlib.suppress(asyncio.CancelledError):
            await signalled
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if node.error is not None:
        print(f"reactor node: {type(node.error).__name__}: {node.error}", file=sys.stderr)
        return exits.FAILURE
    log.info("node %s stopped", node.name)
    return exits.OK


async def _started(node: Node, signalled: asyncio.Future[Any]) -> bool:
    """Start ``node`` unless a signal comes first (while it waits for Redis or a distributor):
    then cancel the start, release what it opened, and return False.

    Raises:
        ReactorError: the start failed (wrong Redis password, name taken, ...).
    """
    starting = asyncio.ensure_future(node.start())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        if starting.exception() is not None:
            await node.close()  # what the start opened before it failed
        starting.result()
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError, ReactorError):
        await starting
    await node.close()
    return False
