"""`reactor monitor`: list stored nodes and jobs, show one job, retry, cancel, delete, prune.

Tables go to stdout (or one JSON document with ``--json``); progress bars, questions and errors
to stderr. Exit codes (reactor.cli.exits): 0 done, 1 no such job or node / refused, 2 a bad
option or Redis URL, or Redis unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pprint import pformat
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import RedisError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reactor.cli import exits, flow_cmd
from reactor.cli.options import env_help, from_env
from reactor.config import DEFAULTS, env_name, parse_duration
from reactor.errors import ConfigError, StorageUnavailableError
from reactor.jobs.limits import describe_limits
from reactor.jobs.record import FAILED, FINISHED, STATUSES, UNFINISHED
from reactor.ops.monitor import RETRYABLE, RedisMonitor
from reactor.storage.base import Pruned
from reactor.storage.client import make_client
from reactor.storage.progress import progress_of
from reactor.storage.redis_layout import safe_url
from reactor.storage.redis_resume import prune_kept


def add_parser(sub: Any) -> None:
    """Register the `monitor` subcommand and its actions."""
    p = sub.add_parser(
        "monitor",
        help="inspect, retry, delete and prune jobs stored in Redis",
        description="Inspect, retry, delete and prune the jobs nodes keep in Redis storage.",
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        default=from_env("--redis") or from_env("--redis-url") or DEFAULTS["redis_url"],
        help=env_help("--redis", f"Redis URL (also {env_name('redis_url')}; default: %(default)s)"),
    )
    p.add_argument(
        "--prefix",
        default=from_env("--prefix") or "reactor",
        help=env_help("--prefix", "key prefix (default: %(default)s)"),
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    nodes = actions.add_parser("nodes", help="nodes with stored jobs, and their counts per status")
    _json_option(nodes)
    jobs = actions.add_parser("jobs", help="one page of one node's jobs")
    jobs.add_argument("node", metavar="NODE")
    jobs.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        metavar="S",
        help=f"only jobs in this status (repeatable): {', '.join(STATUSES)}",
    )
    jobs.add_argument("--name", help="only jobs of this job name")
    jobs.add_argument(
        "--tag",
        action="append",
        metavar="T",
        help="only jobs carrying this tag (repeatable: every one must match)",
    )
    jobs.add_argument(
        "--unfinished", action="store_true", help="only new/in progress/queued/error jobs"
    )
    jobs.add_argument("--limit", type=int, default=20, help="rows per page (default: %(default)s)")
    jobs.add_argument(
        "--cursor", type=int, default=0, help="where the page starts: a previous next_cursor"
    )
    _json_option(jobs)
    show = actions.add_parser("show", help="one job's stored record")
    show.add_argument("job_id", metavar="JOB_ID")
    _json_option(show)
    retry = actions.add_parser(
        "retry", help="run a failed (or error/cancelled) job again from its first attempt"
    )
    retry.add_argument("job_id", metavar="JOB_ID")
    _json_option(retry)
    retry_failed = actions.add_parser("retry-failed", help="retry every failed job of one node")
    retry_failed.add_argument("node", metavar="NODE")
    retry_failed.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _json_option(retry_failed)
    cancel = actions.add_parser(
        "cancel", help="cancel one stored job on its node (running or waiting)"
    )
    cancel.add_argument("job_id", metavar="JOB_ID")
    _json_option(cancel)
    destroy = actions.add_parser(
        "destroy", help="delete one job (cancels a deferred or periodic job)"
    )
    destroy.add_argument("job_id", metavar="JOB_ID")
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy_all = actions.add_parser("destroy-all", help="delete every job of one node")
    destroy_all.add_argument("node", metavar="NODE")
    destroy_all.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    prune = actions.add_parser(
        "prune",
        help="delete one node's kept complete/failed/cancelled records by age and count",
        description="Delete kept records as kept_jobs_ttl / kept_jobs_max do, by hand: those "
        "finished longer ago than --older-than, sparing the --keep-last newest. Unfinished "
        "jobs are never touched.",
    )
    prune.add_argument("node", metavar="NODE")
    prune.add_argument(
        "--status",
        action="append",
        metavar="S",
        help=f"records in this status (repeatable; required): {', '.join(FINISHED)}",
    )
    prune.add_argument("--older-than", metavar="AGE", help="finished before this: 3600, 90m, 7d")
    prune.add_argument("--keep-last", metavar="N", help="spare the N newest of each status")
    prune.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    _json_option(prune)
    flow_cmd.add_action(actions)
    p.set_defaults(func=run)


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document instead")


def run(ns: argparse.Namespace) -> int:
    """Run one monitor action; returns the exit code."""
    action = _ACTIONS[ns.action]
    try:
        with RedisMonitor(ns.redis, prefix=ns.prefix) as monitor:
            return action(monitor, ns)
    except StorageUnavailableError as exc:
        print(f"reactor monitor: {exc}", file=sys.stderr)
        return exits.USAGE
    except ConfigError as exc:  # a bad --redis URL
        print(f"reactor monitor: --redis: {exc}", file=sys.stderr)
        return exits.USAGE


def _out() -> Console:
    """The console tables go to: as wide as the terminal, or 200 columns into a pipe or file."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200, no_color=True)
    return console


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, default=_jsonable, sort_keys=True) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _when(epoch: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS.mmm UTC``; ``-`` when unset."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _confirm(question: str) -> bool:
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = input()
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def _table(*headers: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _nodes(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    counts = {name: monitor.counts(name) for name in monitor.nodes()}
    if ns.json:
        _print_json(
            {"nodes": {name: {**c, "total": sum(c.values())} for name, c in counts.items()}}
        )
        return exits.OK
    if not counts:
        print("no node has stored jobs")
        return exits.OK
    table = _table("node", *STATUSES, "total")
    for name, per_status in counts.items():
        values = [per_status.get(s, 0) for s in STATUSES]
        table.add_row(name, *(str(v) for v in values), str(sum(values)))
    _out().print(table)
    return exits.OK


def _jobs(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    statuses: set[str] | None = set(ns.status) if ns.status else None
    if ns.unfinished:
        statuses = set(UNFINISHED) if statuses is None else statuses & UNFINISHED
    if ns.limit < 1:
        print("reactor monitor: --limit must be >= 1", file=sys.stderr)
        return exits.USAGE
    records, next_cursor = monitor.jobs_page(
        ns.node, status=statuses, name=ns.name, limit=ns.limit, cursor=ns.cursor, tags=ns.tag
    )
    if ns.json:
        _print_json({"node": ns.node, "jobs": records, "next_cursor": next_cursor})
        return exits.OK
    if not records:
        print(f"no matching jobs stored for node {ns.node!r}", file=sys.stderr)
        return exits.FAILURE
    table = _table("id", "status", "name", "attempt", "due (UTC)", "tags", "last error")
    for r in sorted(records, key=lambda r: (r["run_at"] or 0.0, r["id"])):
        table.add_row(
            r["id"], r["status"], r["name"], str(r["attempt"]), _when(r["run_at"]),
            ",".join(r.get("tags") or ()),
            (r["last_error"] or "").partition("\n")[0],  # the summary, not the traceback
        )  # fmt: skip
    _out().print(table)
    if next_cursor:
        print(f"... more: add --cursor {next_cursor}")
    return exits.OK


def _show(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    record = monitor.load(ns.job_id)
    if record is None:
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return exits.FAILURE
    shown = progress_of(monitor.redis, monitor.prefix, record)
    if ns.json:
        progress = None if shown is None else vars(shown)
        _print_json({"job": record, "node": monitor.node_of(ns.job_id), "progress": progress})
        return exits.OK
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for field, value in record.items():
        if field in ("run_at", "enqueued_at", "failed_at") and value:
            value = f"{_when(value)}  ({value!r})"
        elif field == "args":
            value = pformat(value, width=80, sort_dicts=True)
        elif field == "limits" and value:  # what a queued job over one of them waits for
            value = describe_limits(value)
        table.add_row(field, "-" if value is None else str(value))
    if shown is not None:  # a running job's latest report, as its node stored it (~1/s)
        note = f"  {shown.note}" if shown.note else ""
        table.add_row("progress", f"{shown.percent}%{note}  (reported {_when(shown.at)})")
    _out().print(table)
    return exits.OK


def _retry(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    record = monitor.load(ns.job_id)
    retried = record is not None and monitor.retry(ns.job_id)
    if ns.json:
        _print_json({"job_id": ns.job_id, "retried": retried})
    if record is None:
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return exits.FAILURE
    if not retried:
        allowed = ", ".join(sorted(RETRYABLE))
        print(
            f"job {ns.job_id} is {record['status']}: only {allowed} jobs can be retried",
            file=sys.stderr,
        )
        return exits.FAILURE
    if not ns.json:
        print(f"job {ns.job_id} queued for retry on node {monitor.node_of(ns.job_id)}")
    return exits.OK


def _retry_failed(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    failed = monitor.counts(ns.node).get(FAILED, 0)
    if not failed:
        if ns.json:
            _print_json({"node": ns.node, "retried": 0})
        print(f"no failed jobs stored for node {ns.node!r}", file=sys.stderr)
        return exits.FAILURE
    if not ns.yes and not _confirm(f"Retry all {failed} failed jobs of node {ns.node!r}?"):
        print("not retried", file=sys.stderr)
        return exits.FAILURE
    with _progress(f"retrying failed jobs of {ns.node}", monitor.size(ns.node)) as advance:
        retried = monitor.retry_failed(ns.node, progress=advance)
    if ns.json:
        _print_json({"node": ns.node, "retried": retried})
    else:
        print(f"queued {retried} jobs of node {ns.node!r} for retry")
    return exits.OK


def _cancel(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    record = monitor.load(ns.job_id)
    cancelled = record is not None and monitor.cancel(ns.job_id)
    if ns.json:
        _print_json({"job_id": ns.job_id, "cancelled": cancelled})
    if record is None:
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return exits.FAILURE
    if not cancelled:
        print(f"job {ns.job_id} is {record['status']}: it has ended already", file=sys.stderr)
        return exits.FAILURE
    if not ns.json:
        print(f"job {ns.job_id} cancelled on node {record['node']}")
    return exits.OK


def _destroy(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    record = monitor.load(ns.job_id)
    if record is None:
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return exits.FAILURE
    node = monitor.node_of(ns.job_id)
    question = f"Destroy job {ns.job_id} ({record['name']}, {record['status']}, node {node})?"
    if not ns.yes and not _confirm(question):
        print("not destroyed")
        return exits.FAILURE
    if not monitor.destroy(ns.job_id):
        print(f"no stored job {ns.job_id!r}", file=sys.stderr)
        return exits.FAILURE
    print(f"destroyed job {ns.job_id}")
    return exits.OK


def _destroy_all(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    total = sum(monitor.counts(ns.node).values())
    if not total:
        print(f"no jobs stored for node {ns.node!r}", file=sys.stderr)
        return exits.FAILURE
    if not ns.yes and not _confirm(f"Destroy all {total} jobs of node {ns.node!r}?"):
        print("not destroyed")
        return exits.FAILURE
    size = monitor.size(ns.node)
    # destroy_all_jobs_for takes no callback: follow it by watching the node's index shrink.
    with (
        _progress(f"destroying jobs of {ns.node}", size) as advance,
        _watch(lambda: size - monitor.size(ns.node), advance),
    ):
        deleted = monitor.destroy_all_jobs_for(ns.node)
    print(f"destroyed {deleted} jobs of node {ns.node!r}")
    return exits.OK


def _prune_limits(ns: argparse.Namespace) -> tuple[list[str], float | None, int | None]:
    """``prune``'s statuses, age in seconds and count, checked.

    Raises:
        ValueError: one line saying what is wrong.
    """
    if not ns.status:
        raise ValueError(f"--status is required: {', '.join(FINISHED)} (repeatable)")
    wrong = [s for s in ns.status if s not in FINISHED]
    if wrong:
        raise ValueError(f"only kept records are pruned: --status {', '.join(FINISHED)}, "
                         f"not {wrong[0]!r}")  # fmt: skip
    if ns.older_than is None and ns.keep_last is None:
        raise ValueError("give --older-than AGE, --keep-last N, or both")
    older_than = None if ns.older_than is None else parse_duration(ns.older_than)
    keep_last = None
    if ns.keep_last is not None:
        if not ns.keep_last.strip().isdigit():
            raise ValueError(f"--keep-last takes a whole number >= 0, not {ns.keep_last!r}")
        keep_last = int(ns.keep_last)
    return list(dict.fromkeys(ns.status)), older_than, keep_last


def _prune_kept(
    monitor: RedisMonitor, node: str, statuses: list[str], before: float | None,
    keep_last: int | None, dry_run: bool,
) -> dict[str, Pruned]:  # fmt: skip
    """Prune each status with an async client of the monitor's Redis (a Cluster client when
    the monitor found one behind a plain URL)."""
    url = monitor.url
    if isinstance(monitor.redis, RedisCluster) and "+cluster://" not in url:
        url = url.replace("://", "+cluster://", 1)

    async def run() -> dict[str, Pruned]:
        client = make_client(url)
        try:
            return {
                status: await prune_kept(client, monitor.prefix, node, status, before=before,
                                         keep_last=keep_last, dry_run=dry_run)
                for status in statuses
            }  # fmt: skip
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except (RedisError, OSError) as exc:
        raise StorageUnavailableError(
            f"cannot reach Redis at {safe_url(url)} ({type(exc).__name__}: {exc})"
        ) from exc


def _prune(monitor: RedisMonitor, ns: argparse.Namespace) -> int:
    try:
        statuses, older_than, keep_last = _prune_limits(ns)
    except ValueError as exc:
        print(f"reactor monitor prune: {exc}", file=sys.stderr)
        return exits.USAGE
    before = None if older_than is None else time.time() - older_than
    pruned = _prune_kept(monitor, ns.node, statuses, before, keep_last, ns.dry_run)
    rows = [(status, *row) for status, p in pruned.items() for row in p.removed]
    if ns.json:
        removed = [{"id": i, "name": n, "status": s, "finished_at": at} for s, i, n, at in rows]
        _print_json({"node": ns.node, "dry_run": ns.dry_run, "removed": removed})
        return exits.OK
    verb = "would remove" if ns.dry_run else "removed"
    if ns.dry_run and rows:
        table = _table("id", "status", "name", "finished (UTC)")
        for status, job_id, name, at in rows:
            table.add_row(job_id, status, name, _when(at))
        _out().print(table)
    counts = ", ".join(f"{len(p.removed)} {s}" for s, p in pruned.items())
    print(f"{verb} {len(rows)} kept records of node {ns.node!r} ({counts})"
          + (" (dry run: nothing deleted)" if ns.dry_run else ""))  # fmt: skip
    return exits.OK


@contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (shown only on a terminal); yields ``advance(n)``."""
    console = _err()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        yield advance
        bar.update(task, completed=total)


@contextmanager
def _watch(done: Callable[[], int], advance: Callable[[int], None]) -> Iterator[None]:
    """Call ``advance`` from a thread with the growth of ``done()`` every 0.2 s while inside."""
    stop = threading.Event()
    seen = 0

    def poll() -> None:
        nonlocal seen
        while not stop.wait(0.2):
            try:
                now = done()
            except StorageUnavailableError:
                return
            if now > seen:
                advance(now - seen)
                seen = now

    thread = threading.Thread(target=poll, name="reactor-monitor-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


_ACTIONS: dict[str, Callable[[RedisMonitor, argparse.Namespace], int]] = {
    "flow": flow_cmd.show_flow,
    "nodes": _nodes,
    "jobs": _jobs,
    "show": _show,
    "retry": _retry,
    "retry-failed": _retry_failed,
    "cancel": _cancel,
    "destroy": _destroy,
    "destroy-all": _destroy_all,
    "prune": _prune,
}
