"""A node's sync against a distributor: what it lists that is stale, and what it no longer holds.

After each (re)welcome a node lists the assignments it holds, in chunks; the distributor answers
each chunk with the stale ones (the node drops them) and, after the last, takes back every job
the node had stored but did not list (it restarted with memory storage, or lost records).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from reactor.core.routing import NodeState
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.core.distributor import DistributorCore

log = logging.getLogger("reactor.distributor")


def on_sync(core: DistributorCore, node: NodeState, msg: P.Sync, peer: bytes, now: float) -> None:
    """Answer one sync chunk of ``node`` (a handler of :class:`DistributorCore`)."""
    if node.sync_id != msg.sync_id:
        node.sync_id = msg.sync_id
        node.sync_seen = set()
    seen = node.sync_seen
    stale: list[P.Ref] = []
    for job_id, asg in msg.items:
        if core.current(node, job_id, asg) is not None:
            seen.add(job_id)
        else:
            stale.append((job_id, asg))
    if stale:
        core.stats["revoked"] += len(stale)
    core.port.send(node.peer, P.SyncReply(msg.sync_id, stale, msg.last))
    if not msg.last:
        return
    missing = [j for j in node.owned.values() if j.acked and j.id not in seen]
    node.sync_seen = set()
    for job in missing:
        core.take_back(job)
    if missing:
        log.warning(
            "node %s no longer holds %d jobs it had stored (it restarted with memory "
            "storage, or lost records); sending them elsewhere",
            node.name,
            len(missing),
        )
