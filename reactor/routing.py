"""The distributor's routing table: which nodes are there, how loaded, where waiting jobs go.

A plain object with no sockets: the distributor feeds it hellos, acks and feedback, and asks it
where to send a job. Waiting jobs are grouped by their routing constraints, so a job that no
connected node may take never makes the others wait behind it, and a pump costs O(groups).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any


class PendingJob:
    """A job the distributor is responsible for, from enqueue to its final feedback."""

    __slots__ = (
        "acked",
        "counted",
        "deferred",
        "handle",
        "id",
        "last_seq",
        "name",
        "node",
        "not_node",
        "owner",
        "periodic",
        "wire",
    )

    def __init__(
        self,
        job_id: str,
        name: str,
        wire: list[Any],
        handle: Any,
        *,
        node: str | None,
        not_node: str | None,
        deferred: bool,
        periodic: bool,
    ) -> None:
        self.id = job_id
        self.name = name
        self.wire: list[Any] | None = wire  # dropped once a node has stored the job
        self.handle = handle
        self.node = node
        self.not_node = not_node
        self.deferred = deferred
        self.periodic = periodic
        self.owner: NodeState | None = None  # the node it was last sent to
        self.acked = False  # the owner has stored it
        self.counted = False  # it occupies one of the owner's credits
        self.last_seq = 0  # the highest feedback sequence number handled


class NodeState:
    """What the distributor knows about one connected node."""

    __slots__ = (
        "accepting",
        "alive",
        "capacity",
        "durable",
        "job_names",
        "last_seen",
        "load",
        "name",
        "peer",
        "session",
        "unacked",
    )

    def __init__(self, name: str, peer: bytes) -> None:
        self.name = name
        self.peer = peer
        self.session = ""
        self.capacity = 1
        self.load = 0  # jobs sent that still hold a credit
        self.accepting = True
        self.alive = False
        self.durable = False
        self.job_names: frozenset[str] = frozenset()
        self.last_seen = 0.0
        self.unacked: dict[str, PendingJob] = {}

    @property
    def has_room(self) -> bool:
        """Whether the node is up, takes jobs and has a free credit."""
        return self.alive and self.accepting and self.load < self.capacity

    def view(self) -> dict[str, Any]:
        """Plain data for the live view."""
        return {
            "name": self.name,
            "alive": self.alive,
            "accepting": self.accepting,
            "capacity": self.capacity,
            "load": self.load,
            "unacked": len(self.unacked),
            "durable": self.durable,
            "jobs": sorted(self.job_names),
        }


GroupKey = tuple[str | None, str | None]


class Router:
    """Picks nodes for jobs and holds the jobs that cannot go anywhere yet."""

    def __init__(self, strict: Callable[[], bool]) -> None:
        self._strict = strict
        self.nodes: dict[str, NodeState] = {}
        self._rr = 0
        self._order: list[NodeState] | None = None
        self._groups: dict[GroupKey, deque[PendingJob]] = {}
        self.waiting = 0

    # -- picking --------------------------------------------------------------------------------

    def pick(self, job: PendingJob) -> NodeState | None:
        """The node ``job`` should go to now, or None when it must wait.

        ``not_node`` is never violated; ``node`` is preferred, and required when
        ``always_use_specified_node`` is on; otherwise the least-loaded node with room, ties
        broken round robin, preferring nodes that know the job's name.
        """
        if job.node is not None:
            wanted = self.nodes.get(job.node)
            if wanted is not None and wanted.has_room and job.node != job.not_node:
                return wanted
            if self._strict():
                return None
        return self._least_loaded(job.name, job.not_node)

    def _least_loaded(self, name: str, not_node: str | None) -> NodeState | None:
        nodes = self._ordered()
        count = len(nodes)
        if count == 1:  # the common single-node case: no ranking to do
            only = nodes[0]
            return only if only.has_room and only.name != not_node else None
        best: NodeState | None = None
        best_key = (2, 0.0)
        if not count:
            return None
        start = self._rr % count
        for i in range(count):
            node = nodes[(start + i) % count]
            if not node.has_room or node.name == not_node:
                continue
            key = (0 if name in node.job_names else 1, node.load / node.capacity)
            if key < best_key:
                best, best_key = node, key
        if best is not None:
            self._rr += 1
        return best

    def _ordered(self) -> list[NodeState]:
        """The nodes as a list, rebuilt only when the set of nodes changes."""
        if self._order is None or len(self._order) != len(self.nodes):
            self._order = list(self.nodes.values())
        return self._order

    def can_route(self, key: GroupKey) -> bool:
        """Cheap check whether any node could take a job with this routing key now."""
        node, not_node = key
        if node is not None and self._strict():
            wanted = self.nodes.get(node)
            return wanted is not None and wanted.has_room and node != not_node
        return any(n.has_room and n.name != not_node for n in self._ordered())

    # -- waiting jobs ----------------------------------------------------------------------------

    def park(self, job: PendingJob, *, front: bool = False) -> None:
        """Hold ``job`` until a node can take it (at the front for jobs coming back)."""
        key = (job.node, job.not_node)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = deque()
        if front:
            group.appendleft(job)
        else:
            group.append(job)
        self.waiting += 1

    def unpark(self, job: PendingJob) -> bool:
        """Remove a waiting job (cancelled); returns False if it was not waiting."""
        group = self._groups.get((job.node, job.not_node))
        if group is None:
            return False
        try:
            group.remove(job)
        except ValueError:
            return False
        self.waiting -= 1
        return True

    def drain(self) -> Iterator[tuple[PendingJob, NodeState]]:
        """Yield (job, node) for every waiting job that can be placed now, oldest groups first."""
        for key in list(self._groups):
            group = self._groups.get(key)
            if group and not self.can_route(key):
                continue
            while group:
                job = group[0]
                node = self.pick(job)
                if node is None:
                    break
                group.popleft()
                self.waiting -= 1
                yield job, node
            if group is not None and not group:
                del self._groups[key]

    def waiting_jobs(self) -> list[PendingJob]:
        """Every waiting job, for the live view."""
        return [job for group in self._groups.values() for job in group]
