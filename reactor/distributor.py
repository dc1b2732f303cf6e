"""The distributor: lives in the application, routes jobs to nodes and runs their feedback.

It binds one ROUTER socket; nodes dial in with their name as routing id. Every job stays the
distributor's responsibility until a node acknowledges that it has stored it; jobs held by a node
that goes silent are sent to another. ``enqueue`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from typing import Any

import zmq

from reactor import protocol as P
from reactor.config import Config
from reactor.errors import (
    BackPressureError,
    JobCancelledError,
    ReactorError,
)
from reactor.feedback import run_feedback
from reactor.handle import Feedback, JobHandle
from reactor.jobspec import check_options, due_time
from reactor.liveness import Liveness
from reactor.routing import NodeState, PendingJob, Router
from reactor.transport import Endpoint, Peer, tune

log = logging.getLogger("reactor.distributor")


def _bind(sock: zmq.Socket[bytes], address: str, patience: float = 1.0) -> None:
    """Bind, retrying briefly while the port is still held by a socket closed a moment ago
    (libzmq releases a closed listener asynchronously, so a quick restart can find it taken)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            sock.bind(address)
            return
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Distributor(Liveness):
    """Routes jobs from this process to nodes over one bound ROUTER socket.

    Args:
        host: address to bind (``"127.0.0.1"``, ``"0.0.0.0"``, ...).
        port: TCP port; 0 picks a free one (see :attr:`port` after start).
        config: settings (``max_message_size``, heartbeats, ``always_use_specified_node``,
            ``max_waiting_jobs``); a private default Config when omitted.
        curve: optional CURVE server settings (see ``reactor.security``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        config: Config | None = None,
        curve: Any = None,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config if config is not None else Config()
        self.curve = curve
        self.session = secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(5)
        self._lock = threading.Lock()
        self._router = Router(strict=lambda: bool(self.config["always_use_specified_node"]))
        self._jobs: dict[str, PendingJob] = {}
        self._inbox: deque[PendingJob] = deque()
        self._cancels: deque[str] = deque()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._endpoint: Endpoint | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_tick = 0.0
        self._acks: dict[bytes, list[tuple[str, int]]] = {}
        self._max_args = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` as bound."""
        return f"{self.host}:{self.port}"

    @property
    def started(self) -> bool:
        """Whether the socket is bound and the distributor is serving."""
        return self._endpoint is not None

    async def start(self) -> None:
        """Bind the socket and start serving; returns once bound."""
        self.start_in_loop(asyncio.get_running_loop())

    def start_in_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind and serve on ``loop``; must be called from that loop's thread."""
        if self._endpoint is not None:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()
        max_size = int(self.config["max_message_size"])
        self._max_args = max_size - 1024
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        tune(sock, max_message_size=max_size)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        guard = None
        try:
            if self.curve is not None:
                guard = self.curve.apply_server(sock)
            if self.port == 0:
                self.port = sock.bind_to_random_port(f"tcp://{self.host}")
            else:
                _bind(sock, f"tcp://{self.host}:{self.port}")
        except Exception as exc:
            sock.close(linger=0)
            if not isinstance(exc, zmq.ZMQError):
                raise
            raise ReactorError(
                f"cannot bind the distributor to tcp://{self.host}:{self.port}: {exc}; is another "
                "distributor running there? pick another port"
            ) from exc
        self._endpoint = Endpoint(
            loop,
            sock,
            P.Codec(max_size),
            self._on_messages,
            routed=True,
            on_unreachable=self._on_unreachable,
            guard=guard,
            name=f"distributor {self.address}",
        )
        self._last_tick = time.monotonic()
        self._tick_handle = loop.call_later(self._hb_interval, self._tick)
        log.info("distributor listening on tcp://%s", self.address)
        if self._inbox:
            self._wake()

    async def stop(self) -> None:
        """Stop serving; handles of unfinished jobs raise a ReactorError."""
        self.stop_in_loop()

    def stop_in_loop(self) -> None:
        """Synchronous :meth:`stop`, from the loop's thread."""
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._endpoint is not None:
            self._endpoint.close()
        error = ReactorError("the distributor stopped before the job finished")
        for pending in list(self._jobs.values()) + list(self._inbox):
            pending.handle._resolve(None, error)
        self._jobs.clear()
        self._inbox.clear()
        if self.curve is not None:
            self.curve.close()

    async def __aenter__(self) -> Distributor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- enqueue (any thread) -------------------------------------------------------------------

    def enqueue(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        after: float | None = None,
        run_at: dt.datetime | float | None = None,
        period: float | None = None,
        defer: bool = False,
        node: str | None = None,
        not_node: str | None = None,
        on_success: Feedback | None = None,
        on_error: Feedback | None = None,
    ) -> JobHandle:
        """Send a job to a node; returns at once with a handle. Safe from any thread.

        Raises:
            TypeError: ``args`` is not a dict of msgpack-serializable values (the key is named).
            MessageTooLargeError: the encoded args exceed ``max_message_size``.
            ValueError: an invalid ``after``/``run_at``/``period``.
            BackPressureError: ``max_waiting_jobs`` jobs already wait for a node.
            ReactorError: the distributor is not started (or stopped).
        """
        if self._loop is None or self._closed:
            raise ReactorError("the distributor is not running; start it before enqueueing")
        check_options(name, period, node, not_node, on_success, on_error)
        packed = P.pack_args({} if args is None else args, max_size=self._max_args)
        now = time.time()
        due = due_time(after, run_at, now)
        if len(self._inbox) + self._router.waiting >= self.config["max_waiting_jobs"]:
            raise BackPressureError(
                f"{self.config['max_waiting_jobs']} jobs already wait for a node; start more "
                "nodes, slow down, or raise config['max_waiting_jobs']"
            )
        job_id = f"{self._id_prefix}{next(self._ids):x}"
        wire = [
            P.JOB,
            job_id,
            name,
            packed,
            due,
            None if period is None else float(period),
            bool(defer),
            float(after or 0.0),
            now,
        ]
        handle = JobHandle(job_id, name, self, self._lock, on_success, on_error)
        self._inbox.append(
            PendingJob(
                job_id,
                name,
                wire,
                handle,
                node=node,
                not_node=not_node,
                deferred=due > 0.0 or period is not None,
                periodic=period is not None,
            )
        )
        if not self._wake_pending:
            self._wake()
        return handle

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._wake_pending = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._drain_inbox)
        else:
            try:
                loop.call_soon_threadsafe(self._drain_inbox)
            except RuntimeError:  # the loop closed under us
                self._wake_pending = False

    def cancel(self, job_id: str) -> None:
        """Cancel a job by id (what ``handle.cancel()`` calls). Safe from any thread."""
        self._cancels.append(job_id)
        if not self._wake_pending:
            self._wake()

    def _drain_inbox(self) -> None:
        self._wake_pending = False
        inbox = self._inbox
        jobs = self._jobs
        router = self._router
        while inbox:
            pending = inbox.popleft()
            jobs[pending.id] = pending
            node = router.pick(pending) if not router.waiting else None
            if node is not None:
                self._send_job(pending, node)
            else:
                router.park(pending)
        while self._cancels:
            self._cancel_now(self._cancels.popleft())
        if router.waiting:
            self._pump()

    def _send_job(self, pending: PendingJob, node: NodeState) -> None:
        assert self._endpoint is not None and pending.wire is not None
        pending.owner = node
        pending.acked = False
        pending.counted = True
        node.load += 1
        node.unacked[pending.id] = pending
        self._endpoint.send(node.peer, pending.wire)

    def _pump(self) -> None:
        for pending, node in self._router.drain():
            self._send_job(pending, node)

    def _cancel_now(self, job_id: str) -> None:
        pending = self._jobs.get(job_id)
        if pending is None:
            for queued in self._inbox:
                if queued.id == job_id:
                    self._inbox.remove(queued)
                    queued.handle._resolve(None, JobCancelledError(f"job {job_id} was cancelled"))
                    return
            return
        if pending.owner is None:
            self._router.unpark(pending)
            self._finish(pending, None, JobCancelledError(f"job {job_id} was cancelled"))
            return
        assert self._endpoint is not None
        self._endpoint.send(pending.owner.peer, P.Cancel([job_id]))

    # -- messages from nodes --------------------------------------------------------------------

    def _on_messages(self, peer: Peer, messages: list[P.Message]) -> None:
        assert peer is not None
        try:
            name = peer.decode()
        except UnicodeDecodeError:
            log.warning("dropped messages from a peer whose routing id is not UTF-8: %r", peer[:40])
            return
        node = self._router.nodes.get(name)
        now = time.monotonic()
        if node is not None:
            node.last_seen = now
        needs_hello = False
        for msg in messages:
            if isinstance(msg, P.Hello):
                node = self._on_hello(name, peer, msg)
                continue
            if node is None:
                if isinstance(msg, P.Feedback):
                    self._ack(peer, msg)
                    log.info(
                        "feedback for job %s from unknown node %r (sent before this "
                        "distributor started?): acknowledged and dropped",
                        msg.id,
                        name,
                    )
                needs_hello = True
                continue
            if isinstance(msg, P.Stored):
                self._on_stored(node, msg)
            elif isinstance(msg, P.Feedback):
                self._on_feedback(node, msg)
            elif isinstance(msg, P.Heartbeat):
                if msg.session != node.session:
                    needs_hello = True
                elif node.accepting != msg.accepting:
                    node.accepting = msg.accepting
                    log.info(
                        "node %s %s new jobs", name, "takes" if node.accepting else "does not take"
                    )
            elif isinstance(msg, P.Rejected):
                self._on_rejected(node, msg)
            elif isinstance(msg, P.Release):
                for job_id in msg.ids:
                    pending = self._jobs.get(job_id)
                    if pending is not None and pending.owner is node and pending.counted:
                        pending.counted = False
                        node.load -= 1
            else:
                log.warning(
                    "node %r sent a %s, which only a distributor sends; dropped",
                    name,
                    type(msg).__name__,
                )
        if node is not None and not node.alive:
            needs_hello = True
        if needs_hello:
            assert self._endpoint is not None
            self._endpoint.send(peer, P.Reset("unknown session; send a hello"))
        self._flush_acks()
        if self._router.waiting:
            self._pump()

    def _on_hello(self, name: str, peer: bytes, hello: P.Hello) -> NodeState | None:
        assert self._endpoint is not None
        if hello.version != P.PROTOCOL_VERSION:
            log.warning(
                "node %r speaks protocol %d, this distributor %d: refused",
                name,
                hello.version,
                P.PROTOCOL_VERSION,
            )
            self._endpoint.send(
                peer,
                P.Reset(
                    f"protocol version {hello.version} is not supported (this distributor speaks "
                    f"{P.PROTOCOL_VERSION}); run the same reactor version on both sides"
                ),
            )
            return self._router.nodes.get(name)
        if hello.node != name:
            log.warning("a peer with routing id %r says it is %r: refused", name, hello.node)
            return self._router.nodes.get(name)
        node = self._router.nodes.get(name)
        if node is None:
            node = self._router.nodes[name] = NodeState(name, peer)
        elif node.session and node.session != hello.session:
            self._node_restarted(node, durable=hello.durable)
        was_alive = node.alive and node.session == hello.session
        node.peer = peer
        node.session = hello.session
        node.capacity = max(1, hello.capacity)
        node.job_names = frozenset(hello.jobs)
        node.accepting = hello.accepting
        node.durable = hello.durable
        node.alive = True
        node.last_seen = time.monotonic()
        self._endpoint.send(
            peer, P.Welcome(P.PROTOCOL_VERSION, self.address, self.session, self._hb_interval)
        )
        if not was_alive:
            log.info(
                "node %s connected (capacity %d, %d job names%s)",
                name,
                node.capacity,
                len(node.job_names),
                ", durable storage" if node.durable else "",
            )
            for job_id in [
                j.id for j in self._jobs.values() if j.owner is node and j.handle._cancel_pending()
            ]:
                self._endpoint.send(peer, P.Cancel([job_id]))
        return node

    def _on_stored(self, node: NodeState, msg: P.Stored) -> None:
        late: list[str] = []
        for job_id in msg.ids:
            pending = self._jobs.get(job_id)
            if pending is None:
                continue
            if pending.owner is not node:
                late.append(job_id)  # a node we gave up on stored it after all: it must not run
                continue
            pending.acked = True
            node.unacked.pop(job_id, None)
            if pending.deferred:
                pending.wire = None  # the node holds it now; deferred jobs can be many
                if pending.counted:
                    pending.counted = False
                    node.load -= 1
        if late:
            log.info(
                "node %s stored %d jobs already sent elsewhere; cancelling them there",
                node.name,
                len(late),
            )
            assert self._endpoint is not None
            self._endpoint.send(node.peer, P.Cancel(late))

    def _on_rejected(self, node: NodeState, msg: P.Rejected) -> None:
        count = 0
        for job_id in msg.ids:
            pending = self._jobs.get(job_id)
            if pending is None or pending.owner is not node or pending.acked:
                continue
            self._take_back(node, pending)
            count += 1
        if count:
            log.warning(
                "node %s refused %d jobs (%r); routing them elsewhere",
                node.name,
                count,
                msg.reason[:200],
            )

    def _take_back(self, node: NodeState, pending: PendingJob) -> None:
        node.unacked.pop(pending.id, None)
        if pending.counted:
            pending.counted = False
            node.load -= 1
        pending.owner = None
        pending.acked = False
        self._router.park(pending, front=True)

    def _on_feedback(self, node: NodeState, fb: P.Feedback) -> None:
        self._ack(node.peer, fb)
        pending = self._jobs.get(fb.id)
        if pending is None:
            log.debug("feedback for job %s, which is already finished: dropped", fb.id)
            return
        if pending.owner is not node:
            assert self._endpoint is not None
            self._endpoint.send(node.peer, P.Cancel([fb.id]))
            if pending.periodic or not fb.final:
                return
            if pending.owner is not None and pending.owner.alive:  # ran twice: stop the other
                self._endpoint.send(pending.owner.peer, P.Cancel([fb.id]))
            self._release(pending)
        elif fb.seq <= pending.last_seq:
            return  # a re-sent feedback we already handled
        pending.last_seq = fb.seq
        self._deliver(pending, fb)

    def _ack(self, peer: bytes, fb: P.Feedback) -> None:
        acks = self._acks.get(peer)
        if acks is None:
            self._acks[peer] = [(fb.id, fb.seq)]
        else:
            acks.append((fb.id, fb.seq))

    def _flush_acks(self) -> None:
        if self._acks:
            assert self._endpoint is not None
            for peer, items in self._acks.items():
                self._endpoint.send(peer, P.FeedbackAck(items))
            self._acks = {}

    def _deliver(self, pending: PendingJob, fb: P.Feedback) -> None:
        args, error = run_feedback(pending.name, pending.handle, fb)
        if fb.final:
            self._finish(pending, args, error)

    def _release(self, pending: PendingJob) -> None:
        owner = pending.owner
        if owner is not None:
            owner.unacked.pop(pending.id, None)
            if pending.counted:
                pending.counted = False
                owner.load -= 1

    def _finish(
        self, pending: PendingJob, args: dict[str, Any] | None, error: BaseException | None
    ) -> None:
        self._release(pending)
        self._jobs.pop(pending.id, None)
        pending.handle._resolve(args, error)

    def _on_unreachable(self, peer: bytes, messages: list[Any]) -> None:
        node = self._router.nodes.get(peer.decode(errors="replace"))
        if node is not None and node.alive:
            self._node_gone(node, "its connection is gone")

    # -- live view ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The live view as plain data: nodes with their load, waiting and in-flight jobs.

        Call it on the distributor's loop (``JR.snapshot()`` does that from other threads).
        """
        waiting = self._router.waiting_jobs()
        return {
            "address": self.address,
            "nodes": [n.view() for n in self._router.nodes.values()],
            "waiting": len(waiting) + len(self._inbox),
            "waiting_jobs": [
                {"id": j.id, "name": j.name, "node": j.node, "not_node": j.not_node}
                for j in waiting[:100]
            ],
            "in_flight": sum(1 for j in self._jobs.values() if j.owner is not None),
            "unacknowledged": sum(len(n.unacked) for n in self._router.nodes.values()),
            "rejected_frames": dict(self._endpoint.rejected) if self._endpoint else {},
        }
