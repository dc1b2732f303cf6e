"""What a node shows of itself: its metrics gauges and its snapshot, read from its core."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reactor.core.node import NodeCore
from reactor.jobs import record as R
from reactor.net.link import Link
from reactor.ops.metrics import State


def metrics_state(core: NodeCore | None, links: Iterable[Link]) -> State:
    """The gauges, read when /metrics is scraped (from the metrics server's thread)."""
    if core is None:
        return State()
    in_flight: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for job in list(core.jobs.values()):  # one C-level copy: safe against the loop thread
        phase = job.phase
        if phase == R.RUNNING:
            in_flight[job.name] = in_flight.get(job.name, 0) + 1
        elif phase == R.READY or phase == R.WAITING:
            waiting[job.name] = waiting.get(job.name, 0) + 1
    rejected = sum(
        sum(link.endpoint.rejected.values()) for link in list(links) if link.endpoint is not None
    )
    limits = core.limits
    waits = {key: (int(n), total) for key, (n, total) in list(limits.waits.items())}
    return State(in_flight, waiting, not core.storage_ok, rejected, limits.waiting_by_name(), waits)


def not_ready(core: NodeCore | None) -> str | None:
    """Why the node is not ready for jobs (``/readyz``), or None: it is started, not stopping,
    its storage is up, no ``def`` job blocks its loop, and a distributor has welcomed it.
    Read from the metrics server's thread: it only reads."""
    if core is None or not core.started:
        return "the node is starting"
    if core.stopping:
        return "the node is stopping"
    if not core.storage_ok:
        return "the node's storage is unreachable"
    if core.blocked:
        return "a def job holds the node's loop (the jobs queued behind it were handed back)"
    if not any(state.welcomed for state in list(core.links.values())):
        return "no distributor has welcomed the node"
    return None


def snapshot(name: str, core: NodeCore | None) -> dict[str, Any]:
    """A node's live view as plain data."""
    if core is None:
        return {"name": name, "accepting": False}
    return {
        "name": name,
        "accepting": core.accepting,
        "held": len(core.jobs),
        "ready": len(core.ready) + len(core.ranked) + core.queue.fair.size,
        "running": core.running,
        "timers": len(core.timers),
        "distributors": {key: s.welcomed for key, s in core.links.items()},
        "stats": dict(core.stats),
        "limit_waiting": core.limits.waiting(),  # jobs waiting per limit key (issue 20)
    }


def no_such_job(node: str, name: str, directory: object) -> str:
    """The error a job of a name the node does not know fails with: where to define it."""
    return (
        f"node {node!r} has no job named {name!r}; define it with "
        f"@job({name!r}) in a file under {str(directory)!r} and restart the node"
    )
