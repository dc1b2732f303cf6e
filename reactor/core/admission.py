"""Which node sessions a distributor admits: hello and welcome, a restarted node taking its name
back, a second node claiming a live one's name refused, and resets for unknown sessions.

Plain code fed ``(now, message)``; the distributor core calls it for every HELLO and for messages
from sessions it does not know (DESIGN §3 "Names").
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from reactor.core.liveness import Liveness
from reactor.core.routing import Contender, NodeState, Presence, Router
from reactor.wire import protocol as P

log = logging.getLogger("reactor.distributor")


class Sender(Protocol):
    """Where admission's answers go: the driver's connection to the nodes."""

    def send(self, peer: bytes, message: P.Message | list[Any]) -> None:
        """Queue a message for a node's connection."""


class Admission:
    """Admits node sessions under their names, for one distributor session.

    Args:
        sender: where welcomes, refusals, probes and resets go.
        router: holds the nodes by name (admission adds and updates them).
        liveness: how long a live name's holder must be silent before a newcomer takes it.
        address: ``host:port`` as announced in welcomes.
        session: this distributor's session id.
    """

    def __init__(
        self,
        sender: Sender,
        router: Router,
        liveness: Liveness,
        *,
        address: str,
        session: str,
        limits_store: str = "",
    ) -> None:
        self.limits_store = limits_store  # told to every node in its welcome (issue 20)
        self.sender = sender
        self.router = router
        self.liveness = liveness
        self.address = address
        self.session = session
        self._resets: dict[bytes, float] = {}

    def ask_hello(self, peer: bytes, now: float) -> None:
        """A Reset, at most one per peer per heartbeat interval (no storms)."""
        if now - self._resets.get(peer, -1e18) < self.liveness.interval:
            return
        if len(self._resets) >= 1024:  # bounded: a flood of made-up routing ids
            self._resets.clear()
        self._resets[peer] = now
        self.sender.send(peer, P.Reset("unknown session; send a hello"))

    def hello(self, name: str, peer: bytes, hello: P.Hello, now: float) -> NodeState | None:
        """Welcome ``hello``'s session as node ``name`` if it may have the name.

        Returns:
            The node when the session was welcomed (its unstored jobs are then to be sent
            again), else None (refused, or waiting to see whether the name's holder is alive).
        """
        nodes = self.router.nodes
        node = nodes.get(name)
        if hello.version != P.PROTOCOL_VERSION:
            self._refuse_version(name, peer, hello)
            return None
        if peer != P.routing_id(hello.node, hello.session):
            log.warning("a peer with routing id %r says it is %r: refused", peer[:300], hello.node)
            return None
        if node is None:
            node = nodes[name] = NodeState(name, peer)
        elif node.session and node.session != hello.session:
            if not self._may_take_over(node, peer, hello, now):
                return None
            log.info("node %s restarted (session %s, %s)", name, hello.session, hello.where)
            node.echo = 0.0
            node.contender = None
        was_up = node.alive and node.session == hello.session
        self._admit(node, peer, hello, now)
        if not was_up:
            log.info(
                "node %s connected (capacity %d, %d job names%s, %s)",
                name,
                node.capacity,
                len(node.job_names),
                ", durable storage" if node.durable else "",
                hello.where,
            )
        return node

    def _refuse_version(self, name: str, peer: bytes, hello: P.Hello) -> None:
        log.warning(
            "node %r speaks protocol %d, this distributor %d: refused",
            name,
            hello.version,
            P.PROTOCOL_VERSION,
        )
        reason = (
            f"protocol version {hello.version} is not supported (this distributor speaks "
            f"{P.PROTOCOL_VERSION}); run the same reactor version on both sides"
        )
        self.sender.send(peer, P.Refused(hello.session, "ProtocolError", reason))

    def _admit(self, node: NodeState, peer: bytes, hello: P.Hello, now: float) -> None:
        """Take the hello's session as the node's, and welcome it."""
        node.peer = peer
        node.session = hello.session
        node.where = hello.where
        node.capacity = max(1, hello.capacity)
        if len(hello.jobs) != len(node.job_names) or not node.job_names.issuperset(hello.jobs):
            node.job_names = frozenset(hello.jobs)
        node.accepting = hello.accepting
        node.durable = hello.durable
        node.presence = Presence.UP
        node.connected = True
        node.left = False
        node.last_seen = now
        node.echo = max(node.echo, hello.sent_at)
        welcome = P.Welcome(
            P.PROTOCOL_VERSION,
            self.address,
            self.session,
            self.liveness.interval,
            hello.sent_at,
            hello.session,
            self.limits_store,
        )
        self.sender.send(peer, welcome)

    def _may_take_over(self, node: NodeState, peer: bytes, hello: P.Hello, now: float) -> bool:
        """Whether a new session may take a name another session holds (DESIGN §3 "Names").

        A holder that said bye, or that has been silent for a while, is gone: the newcomer is
        its restart. A holder heard *after* the newcomer first said hello is alive: two nodes
        share the name, and the newcomer is refused. Until one of those is known, the newcomer
        waits unanswered (it says hello again every heartbeat interval).
        """
        if hello.session in node.refused:
            self.sender.send(
                peer, P.Refused(hello.session, "NodeNameTaken", node.refused[hello.session])
            )
            return False
        if node.left or not node.alive:
            return True
        if not node.connected and now - node.last_seen > 1.5 * self.liveness.interval:
            return True  # its connection is gone and it has missed a heartbeat: it died
        contender = node.contender
        if contender is None or contender.session != hello.session:
            node.contender = Contender(hello.session, now, hello.where)
            probe = P.Heartbeat(self.session, True, node.echo, 0)  # still there?
            self.sender.send(node.peer, probe)
            log.warning(
                "a second node says it is %s (%s) while %s is alive; waiting to see which is live",
                node.name,
                hello.where,
                node.where,
            )
            return False
        if node.last_seen > contender.since:
            self._refuse_second(node, peer, hello)
            return False
        return now - node.last_seen >= self.liveness.probation

    def _refuse_second(self, node: NodeState, peer: bytes, hello: P.Hello) -> None:
        """Refuse a second node under a live node's name (and remember it, bounded)."""
        reason = (
            f"node name {node.name!r} is held by a live node ({node.where}) connected to "
            f"distributor {self.address}; give this node another --name, or stop the other"
        )
        log.error(
            "refused a second node named %s (%s): %s is alive",
            node.name,
            hello.where,
            node.where,
        )
        self.sender.send(peer, P.Refused(hello.session, "NodeNameTaken", reason))
        node.contender = None
        if len(node.refused) >= 16:
            node.refused.clear()
        node.refused[hello.session] = reason
