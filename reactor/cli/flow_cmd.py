"""``reactor monitor flow FLOW_ID``: a workflow's steps and their status, read from its durable
record in Redis (flows started with ``outbox=``; kept ``result_ttl`` seconds after they end)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from reactor.cli import exits
from reactor.ops.monitor import RedisMonitor
from reactor.storage.flows import read_flow


def add_action(actions: Any) -> None:
    """Register ``flow`` among the monitor's actions."""
    flow = actions.add_parser(
        "flow", help="a workflow's steps and their status (flows started with outbox=)"
    )
    flow.add_argument("flow_id", metavar="FLOW_ID")
    flow.add_argument("--json", action="store_true", help="print one JSON document instead")


def show_flow(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    """Print flow ``ns.flow_id``'s steps; exit 1 when no record of it exists."""
    try:
        flow = read_flow(monitor.redis, ns.flow_id, ns.prefix)
    except ValueError as exc:
        print(f"flow {ns.flow_id!r}: unreadable record ({exc})", file=sys.stderr)
        return exits.FAILURE
    if flow is None:
        print(
            f"no flow {ns.flow_id!r} in Redis (only flows started with outbox= are kept, and "
            "for result_ttl seconds after they end)",
            file=sys.stderr,
        )
        return exits.FAILURE
    if ns.json:
        print(json.dumps(flow, default=str))
        return exits.OK
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    ended = sum(
        step["status"] != "pending" and step["status"] != "enqueued" for step in flow["steps"]
    )
    console.print(
        f"flow {flow['id']}: {flow['status']}, started {_when(flow['started'])}, "
        f"{ended}/{len(flow['steps'])} steps ended"
        + (f"; {flow['error']}" if flow["error"] else "")
    )
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for header in ("step", "job id", "name", "status", "since (UTC)", "error"):
        table.add_column(header, overflow="fold")
    for step in flow["steps"]:
        table.add_row(
            str(step["step"]), step["id"] or "-", step["name"], step["status"],
            _when(step["at"]), step["error"] or "",
        )  # fmt: skip
    console.print(table)
    return exits.OK


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
