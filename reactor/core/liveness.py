"""Liveness as verdicts: which nodes have gone silent long enough to be *gone* or *lost*.

A plain object fed the time; the distributor core applies what it returns (DESIGN §3 "Nodes that
go away"). It also notices when the distributor's own loop was stalled, and then gives every node
a fresh chance instead of blaming it for silence nobody could have heard.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from reactor.core.routing import NodeState, Presence


class Verdict(Enum):
    """What silence means for a node."""

    GONE = "gone"  # past heartbeat_timeout: route nothing to it; its unstored jobs go elsewhere
    LOST = "lost"  # past node_lost_after: every job it held goes elsewhere


class Liveness:
    """Judges nodes by how long they have been silent.

    Args:
        interval: heartbeat interval in seconds (how often :meth:`judge` is called).
        timeout: silence after which a node is gone.
        lost_after: silence after which a node is lost (at least ``timeout``).
    """

    def __init__(self, *, interval: float, timeout: float, lost_after: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.lost_after = max(lost_after, timeout)
        self._last_tick: float | None = None

    @property
    def probation(self) -> float:
        """How long a live name's holder must stay silent before a new session may take it
        (a live holder heartbeats every interval on its own connection)."""
        return 2.5 * self.interval

    def judge(self, now: float, nodes: Iterable[NodeState]) -> list[tuple[NodeState, Verdict]]:
        """The verdicts due at ``now``; call it every ``interval`` seconds."""
        last, self._last_tick = self._last_tick, now
        stalled = last is not None and now - last > max(self.timeout / 2, 2 * self.interval)
        verdicts: list[tuple[NodeState, Verdict]] = []
        for node in nodes:
            if node.presence is Presence.LOST or not node.session:
                continue
            if stalled:  # our own loop was blocked: nobody could be heard
                node.last_seen = max(node.last_seen, now - self.interval)
            silent = now - node.last_seen
            if silent > self.lost_after:
                verdicts.append((node, Verdict.LOST))
            elif silent > self.timeout and node.presence is Presence.UP:
                verdicts.append((node, Verdict.GONE))
        return verdicts
