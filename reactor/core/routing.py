"""The distributor's state: its jobs, the nodes it knows, and the routing table.

Plain objects with no sockets: the distributor core asks the router where to send a job and
parks jobs that cannot go anywhere yet; the router owns the nodes' credit counts. Waiting jobs
are grouped by their routing constraints, priority and ``fair_key``, so a job that no connected
node may take never makes the others wait behind it, a pump costs O(groups), and higher-priority
groups are served first (FIFO within a group). While jobs with a fair key wait, the groups of one
priority take turns, one job each, so one key's backlog never holds back another key's jobs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

from reactor.core.jobstate import JobState

__all__ = ["Contender", "GroupKey", "NodeState", "Presence", "Router", "group_key"]


class Presence(Enum):
    """What the distributor believes about a node (DESIGN §3 "Nodes that go away")."""

    UP = "up"
    GONE = "gone"  # silent past heartbeat_timeout: gets no jobs; unstored jobs went elsewhere
    LOST = "lost"  # silent past node_lost_after: every job it held went elsewhere


class NodeState:
    """What the distributor knows about one node name."""

    __slots__ = (
        "accepting",
        "capacity",
        "connected",
        "contender",
        "durable",
        "echo",
        "job_names",
        "last_seen",
        "left",
        "load",
        "name",
        "owned",
        "peer",
        "presence",
        "refused",
        "reset_at",
        "session",
        "sync_id",
        "sync_seen",
        "unacked",
        "where",
    )

    def __init__(self, name: str, peer: bytes) -> None:
        self.name = name
        self.peer = peer
        self.session = ""
        self.where = ""
        self.capacity = 1
        self.load = 0  # jobs sent that still hold a credit
        self.accepting = True
        self.presence = Presence.GONE
        self.connected = True  # False after a send found no connection, until it is heard
        self.left = False  # it said bye
        self.durable = False
        self.job_names: frozenset[str] = frozenset()
        self.last_seen = 0.0
        self.echo = 0.0  # the latest node clock reading it sent (its lease runs from it)
        self.reset_at = -1e18  # when it was last asked for a hello
        self.unacked: dict[str, JobState] = {}  # sent, not stored; oldest send first
        self.owned: dict[str, JobState] = {}  # every job whose current assignment is here
        self.contender: Contender | None = None
        self.refused: dict[str, str] = {}  # sessions refused this name, with the reason
        self.sync_id = -1
        self.sync_seen: set[str] = set()

    @property
    def alive(self) -> bool:
        """Whether it is up (heard within heartbeat_timeout)."""
        return self.presence is Presence.UP

    @property
    def has_room(self) -> bool:
        """Whether the node is up, reachable, takes jobs and has a free credit."""
        return (
            self.presence is Presence.UP
            and self.connected
            and self.accepting
            and self.load < self.capacity
        )

    def view(self) -> dict[str, Any]:
        """Plain data for the live view."""
        return {
            "name": self.name,
            "alive": self.alive,
            "presence": self.presence.value,
            "connected": self.connected,
            "accepting": self.accepting,
            "capacity": self.capacity,
            "load": self.load,
            "unacked": len(self.unacked),
            "held": len(self.owned),
            "durable": self.durable,
            "where": self.where,
            "jobs": sorted(self.job_names),
        }


class Contender:
    """A second session hello-ing under a live node's name, on probation (DESIGN §3 "Names")."""

    __slots__ = ("session", "since", "where")

    def __init__(self, session: str, since: float, where: str) -> None:
        self.session = session
        self.since = since
        self.where = where


GroupKey = tuple[str | None, str | None, int, str | None]  # node, not_node, priority, fair key


def _higher_first(key: GroupKey) -> int:
    return -key[2]


def group_key(job: JobState) -> GroupKey:
    """Where ``job`` waits: its routing constraints, priority and fair key (issue 20)."""
    limits = job.limits
    return job.node, job.not_node, job.priority, None if limits is None else limits[5]


class Router:
    """Picks nodes for jobs and holds the jobs that cannot go anywhere yet."""

    def __init__(self, strict: Callable[[], bool]) -> None:
        self._strict = strict
        self.nodes: dict[str, NodeState] = {}
        self._rr = 0
        self._order: list[NodeState] | None = None
        self._groups: dict[GroupKey, deque[JobState]] = {}
        self._ranked = 0  # groups of a non-zero priority: only then does a pump sort the groups
        self._fair = 0  # groups of a fair key: only then do groups take turns
        self.waiting = 0

    # -- picking --------------------------------------------------------------------------------

    def pick(self, job: JobState) -> NodeState | None:
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
        node, not_node = key[0], key[1]
        if node is not None and self._strict():
            wanted = self.nodes.get(node)
            return wanted is not None and wanted.has_room and node != not_node
        return any(n.has_room and n.name != not_node for n in self._ordered())

    # -- credits ---------------------------------------------------------------------------------

    @staticmethod
    def charge(job: JobState, node: NodeState) -> None:
        """``job`` takes one of ``node``'s credits."""
        if not job.counted:
            job.counted = True
            node.load += 1

    @staticmethod
    def release(job: JobState) -> None:
        """``job`` gives its owner's credit back (stored deferred job, parked, taken back, done)."""
        owner = job.owner
        if job.counted and owner is not None:
            job.counted = False
            owner.load -= 1

    # -- waiting jobs ----------------------------------------------------------------------------

    def park(self, job: JobState, *, front: bool = False) -> None:
        """Hold ``job`` until a node can take it (at the front of its priority for jobs coming
        back)."""
        key = group_key(job)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = deque()
            if job.priority:
                self._ranked += 1
            if key[3] is not None:
                self._fair += 1
        if front:
            group.appendleft(job)
        else:
            group.append(job)
        self.waiting += 1

    def unpark(self, job: JobState) -> bool:
        """Remove a waiting job (cancelled); returns False if it was not waiting."""
        group = self._groups.get(group_key(job))
        if group is None:
            return False
        try:
            group.remove(job)
        except ValueError:
            return False
        self.waiting -= 1
        return True

    def drain(self) -> Iterator[tuple[JobState, NodeState]]:
        """Yield (job, node) for every waiting job that can be placed now: higher priorities
        first, then oldest groups first (taking turns while fair-keyed groups wait)."""
        keys = list(self._groups)
        if self._ranked:
            keys.sort(key=_higher_first)  # stable: equal priorities keep their age order
        if self._fair:
            yield from self._take_turns(keys)
            return
        for key in keys:
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
                self._drop(key)

    def _take_turns(self, keys: list[GroupKey]) -> Iterator[tuple[JobState, NodeState]]:
        """:meth:`drain` with fair keys: within each priority, one job per group per turn."""
        start = 0
        while start < len(keys):
            end = start
            while end < len(keys) and keys[end][2] == keys[start][2]:
                end += 1
            tier, moved = keys[start:end], True
            while moved:
                moved = False
                for key in tier:
                    group = self._groups.get(key)
                    if not group:
                        continue
                    node = self.pick(group[0])
                    if node is None:
                        continue
                    job = group.popleft()
                    self.waiting -= 1
                    moved = True
                    if not group:
                        self._drop(key)
                    yield job, node
            start = end

    def _drop(self, key: GroupKey) -> None:
        """An emptied group goes."""
        del self._groups[key]
        if key[2]:
            self._ranked -= 1
        if key[3] is not None:
            self._fair -= 1

    def waiting_jobs(self) -> list[JobState]:
        """Every waiting job, for the live view (higher priorities first)."""
        groups = sorted(self._groups.items(), key=lambda item: -item[0][2])
        return [job for _, group in groups for job in group]
