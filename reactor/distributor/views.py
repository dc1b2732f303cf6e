"""What a distributor shows of itself: its live view (``snapshot``), its metrics gauges and the
jobs no node has stored yet, read from its core and the jobs queued for the loop."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from reactor.core.distributor import DistributorCore
from reactor.core.jobstate import JobState
from reactor.ops.health import Health
from reactor.ops.metrics import State

if TYPE_CHECKING:
    import asyncio

    from reactor.distributor.driver import Distributor
    from reactor.net.transport import Endpoint


def unstored(queued: Iterable[JobState], core: DistributorCore | None) -> list[JobState]:
    """Jobs held that no node has stored yet: queued, waiting, or sent and unacknowledged."""
    jobs = list(queued)
    if core is not None:
        jobs.extend(core.router.waiting_jobs())
        for node in core.router.nodes.values():
            jobs.extend(node.unacked.values())
    return jobs


def metrics_state(
    queued: Iterable[JobState], core: DistributorCore | None, endpoint: Endpoint | None
) -> State:
    """The gauges, read when /metrics is scraped (from the metrics server's thread)."""
    in_flight: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for job in list(queued):
        waiting[job.name] = waiting.get(job.name, 0) + 1
    if core is not None:
        for job in list(core.jobs.values()):  # one C-level copy: safe against the loop
            into = waiting if job.owner is None else in_flight
            into[job.name] = into.get(job.name, 0) + 1
    rejected = sum(endpoint.rejected.values()) if endpoint is not None else 0
    return State(in_flight, waiting, False, rejected)


def snapshot(
    core: DistributorCore,
    queued: int,
    endpoint: Endpoint | None,
    *,
    address: str,
    session: str,
    finished: int,
) -> dict[str, Any]:
    """The live view as plain data: nodes with their load, waiting and in-flight jobs.

    ``queued`` counts the jobs enqueued that the loop has not handed to the core yet.
    """
    waiting = core.router.waiting_jobs()
    nodes = core.router.nodes.values()
    now = time.monotonic()
    return {
        "address": address,
        "session": session,
        "taken_at": time.time(),
        "finished": finished,
        "nodes": [{**n.view(), "heard_ago": round(now - n.last_seen, 3)} for n in nodes],
        "waiting": len(waiting) + queued,
        "waiting_jobs": [
            {"id": j.id, "name": j.name, "node": j.node, "not_node": j.not_node}
            for j in waiting[:100]
        ],
        "in_flight": sum(1 for j in core.jobs.values() if j.owner is not None),
        "unacknowledged": sum(len(n.unacked) for n in nodes),
        "stats": dict(core.stats),
        "rejected_frames": dict(endpoint.rejected) if endpoint is not None else {},
    }


def health(distributor: Distributor, loop: asyncio.AbstractEventLoop) -> Health:
    """``/healthz`` and ``/readyz`` of ``distributor``: alive while its loop answers, ready
    while its socket is bound (stopping closes the server)."""

    def not_ready() -> str | None:
        return None if distributor.started else "the distributor's socket is not bound"

    return Health(loop, ready=not_ready)


def no_node_hint(core: DistributorCore | None, queued: int, address: str) -> str:
    """Why a job may not have finished, for ``JobTimeoutError`` (read from any thread): that no
    node is connected and how many jobs wait for one, or ``""`` when a node is connected."""
    nodes = list(core.router.nodes.values()) if core is not None else []  # one C-level copy
    if any(node.alive for node in nodes):
        return ""
    waiting = queued + (core.router.waiting if core is not None else 0)
    jobs = "1 job waits" if waiting == 1 else f"{waiting} jobs wait"
    return f"no node is connected to distributor {address}: {jobs} for one"
