"""`reactor monitor`: list nodes and jobs stored in Redis, show one job, delete jobs.

Exit codes: 0 done, 1 no such job or node / deletion refused, 2 Redis unreachable.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pprint import pformat
from typing import Any

from tabulate import tabulate

from reactor.config import DEFAULTS
from reactor.errors import StorageUnavailableError
from reactor.monitor import RedisMonitor
from reactor.record import STATUSES


def add_parser(sub: Any) -> None:
    """Register the `monitor` subcommand and its actions."""
    p = sub.add_parser(
        "monitor",
        help="inspect and delete jobs stored in Redis",
        description="Inspect and delete the jobs nodes keep in Redis storage.",
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        default=DEFAULTS["redis_url"],
        help="Redis URL (default: %(default)s)",
    )
    p.add_argument("--prefix", default="reactor", help="key prefix (default: %(default)s)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("nodes", help="nodes with stored jobs, and their counts per status")
    jobs = actions.add_parser("jobs", help="one node's jobs")
    jobs.add_argument("node", metavar="NODE")
    jobs.add_argument("--unfinished", action="store_true", help="only new/in progress/queued/error")
    jobs.add_argument(
        "--limit", type=int, default=200, help="rows to print, soonest due first (0: all)"
    )
    show = actions.add_parser("show", help="one job's stored record")
    show.add_argument("job_id", metavar="JOB_ID")
    destroy = actions.add_parser(
        "destroy", help="delete one job (cancels a deferred or periodic job)"
    )
    destroy.add_argument("job_id", metavar="JOB_ID")
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy_all = actions.add_parser("destroy-all", help="delete every job of one node")
    destroy_all.add_argument("node", metavar="NODE")
    destroy_all.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    """Run one monitor action; returns the exit code."""
    action = _ACTIONS[ns.action]
    try:
        with RedisMonitor(ns.redis, prefix=ns.prefix) as monitor:
            return action(monitor, ns)
    except StorageUnavailableError as exc:
        print(f"reactor monitor: {exc}", file=sys.stderr)
        return 2


def _when(epoch: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS.mmm UTC``; ``-`` when unset."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _nodes(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    names = monitor.nodes()
    if not names:
        print("no node has stored jobs")
        return 0
    rows = []
    for name in names:
        counts = monitor.counts(name)
        rows.append([name, *(counts.get(s, 0) for s in STATUSES), sum(counts.values())])
    print(tabulate(rows, headers=["node", *STATUSES, "total"]))
    return 0


def _jobs(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    records = sorted(
        monitor.jobs_for(ns.node, to_be_retried=ns.unfinished).values(),
        key=lambda r: (r["run_at"], r["id"]),
    )
    if not records:
        print(f"no {'unfinished ' if ns.unfinished else ''}jobs stored for node {ns.node!r}")
        return 1
    shown = records[: ns.limit] if ns.limit > 0 else records
    rows = [
        [r["id"], r["status"], r["name"], r["attempt"], _when(r["run_at"]), r["last_error"] or ""]
        for r in shown
    ]
    print(tabulate(rows, headers=["id", "status", "name", "attempt", "due (UTC)", "last error"]))
    if len(shown) < len(records):
        print(f"... {len(records) - len(shown)} more (use --limit 0 to list all)")
    return 0


def _show(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    record = monitor.load(ns.job_id)
    if record is None:
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return 1
    rows: list[list[Any]] = []
    for field, value in record.items():
        if field in ("run_at", "enqueued_at", "failed_at") and value:
            value = f"{_when(value)}  ({value!r})"
        elif field == "args":
            value = pformat(value, width=80, sort_dicts=True)
        rows.append([field, "-" if value is None else value])
    print(tabulate(rows, tablefmt="plain"))
    return 0


def _destroy(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    record = monitor.load(ns.job_id)
    if record is None:
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return 1
    node = monitor.node_of(ns.job_id)
    question = f"Destroy job {ns.job_id} ({record['name']}, {record['status']}, node {node})?"
    if not ns.yes and not _confirm(question):
        print("not destroyed")
        return 1
    if not monitor.destroy(ns.job_id):
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return 1
    print(f"destroyed job {ns.job_id}")
    return 0


def _destroy_all(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    total = sum(monitor.counts(ns.node).values())
    if not total:
        print(f"no jobs stored for node {ns.node!r}", file=sys.stderr)
        return 1
    if not ns.yes and not _confirm(f"Destroy all {total} jobs of node {ns.node!r}?"):
        print("not destroyed")
        return 1
    print(f"destroyed {monitor.destroy_all_jobs_for(ns.node)} jobs of node {ns.node!r}")
    return 0


_ACTIONS = {
    "nodes": _nodes,
    "jobs": _jobs,
    "show": _show,
    "destroy": _destroy,
    "destroy-all": _destroy_all,
}
