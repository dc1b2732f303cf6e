"""The distributor's side of liveness: heartbeats, nodes declared gone, and nodes that restart.

A mixin of :class:`~reactor.distributor.Distributor`; what it does with a gone node's jobs is the
delivery contract of DESIGN §3 (unacknowledged jobs go to another node).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from reactor import protocol as P
from reactor.config import Config
from reactor.errors import JobFailed, RemoteError
from reactor.routing import NodeState, PendingJob, Router
from reactor.transport import Endpoint

log = logging.getLogger("reactor.distributor")


class Liveness:
    """Heartbeats and node departures for a distributor (see :class:`Distributor`)."""

    config: Config
    session: str
    _loop: asyncio.AbstractEventLoop | None
    _endpoint: Endpoint | None
    _router: Router
    _jobs: dict[str, PendingJob]
    _closed: bool
    _last_tick: float
    _tick_handle: asyncio.TimerHandle | None

    @property
    def _hb_interval(self) -> float:
        return float(self.config["heartbeat_interval"])

    def _pump(self) -> None:
        raise NotImplementedError

    def _take_back(self, node: NodeState, pending: PendingJob) -> None:
        raise NotImplementedError

    def _finish(
        self, pending: PendingJob, args: dict[str, Any] | None, error: BaseException | None
    ) -> None:
        raise NotImplementedError

    def _tick(self) -> None:
        loop = self._loop
        if self._closed or loop is None or self._endpoint is None:
            return
        self._tick_handle = loop.call_later(self._hb_interval, self._tick)
        self._endpoint._on_ready()  # read what queued while we were busy before judging anyone
        now = time.monotonic()
        timeout = float(self.config["heartbeat_timeout"])
        stalled = now - self._last_tick > max(timeout / 2, 2 * self._hb_interval)
        self._last_tick = now
        beat = P.Heartbeat(self.session, True)
        for node in self._router.nodes.values():
            if not node.alive:
                continue
            if stalled:  # our own loop was blocked: give everyone a fresh chance
                node.last_seen = max(node.last_seen, now - self._hb_interval)
            if now - node.last_seen > timeout:
                self._node_gone(node, f"silent for {now - node.last_seen:.1f}s")
            else:
                self._endpoint.send(node.peer, beat)
        if self._router.waiting:
            self._pump()

    def _node_gone(self, node: NodeState, why: str) -> None:
        node.alive = False
        unacked = list(node.unacked.values())
        for pending in unacked:
            self._take_back(node, pending)
        assert self._endpoint is not None
        self._endpoint.drop_outbox(node.peer)
        log.warning(
            "node %s declared gone (%s); %d unacknowledged jobs go to other nodes",
            node.name,
            why,
            len(unacked),
        )
        self._pump()

    def _node_restarted(self, node: NodeState, *, durable: bool) -> None:
        """A node came back under a new session: what it had not stored is sent again; with
        memory storage, the running jobs it held are lost, so those are sent again too."""
        if node.alive:
            self._node_gone(node, "it restarted")
        else:
            for pending in list(node.unacked.values()):
                self._take_back(node, pending)
        if durable:
            return
        lost = 0
        for pending in list(self._jobs.values()):
            if pending.owner is not node:
                continue
            if pending.wire is not None:
                self._take_back(node, pending)
            else:
                lost += 1
                self._finish(
                    pending,
                    None,
                    JobFailed(
                        pending.id,
                        RemoteError(
                            "NodeRestarted",
                            f"node {node.name} restarted with memory storage and lost "
                            "this deferred job; use redis storage to keep jobs across restarts",
                        ),
                        {},
                    ),
                )
        if lost:
            log.warning(
                "node %s restarted with memory storage: %d deferred jobs it held are lost",
                node.name,
                lost,
            )
