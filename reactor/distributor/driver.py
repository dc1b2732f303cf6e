"""The distributor's driver: binds the ROUTER socket and runs a DistributorCore on the loop.

Nodes dial in with their name as routing id. The delivery logic (assignment numbers, re-sends,
liveness, feedback de-duplication) lives in :mod:`reactor.core.distributor`; this module moves
messages between the socket and the core, takes jobs from any thread, and turns the core's
outcomes into handle results and feedback callables."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Unpack

from reactor.config import Config
from reactor.core.distributor import DistributorCore
from reactor.core.jobstate import JobState, make_spec
from reactor.distributor import views
from reactor.distributor.drain import DrainState, report_lost, wait_stored
from reactor.distributor.farewell import say_goodbye
from reactor.distributor.feedback import Outcomes
from reactor.distributor.flow_handle import FlowHandle
from reactor.distributor.handle import Feedback, JobHandle, ProgressFeedback
from reactor.distributor.inbox import Inbox
from reactor.distributor.listener import open_router, serve_router
from reactor.distributor.membership import make_announcer, open_outbox
from reactor.distributor.unique import ForeignJobHandle, UniqueKeys
from reactor.distributor.workflows import Workflows
from reactor.errors import BackPressureError, ReactorError
from reactor.jobs.flow import Flow
from reactor.jobs.limits import FlowOptions
from reactor.jobs.options import PLAIN, ROUTINE, EnqueueOptions, check_feedback, options_from
from reactor.net.transport import GOODBYE_LINGER, Endpoint
from reactor.ops import trace_hooks
from reactor.ops.metrics import Metrics, MetricsServer
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.distributor.outbox import Outbox
    from reactor.storage.discovery import Announcer

log = logging.getLogger("reactor.distributor")


class Distributor:
    """Routes jobs from this process to nodes over one bound ROUTER socket.

    Args:
        host: address to bind (``"127.0.0.1"``, ``"0.0.0.0"``, ...).
        port: TCP port; 0 picks a free one (see :attr:`port` after start).
        config: settings (``max_message_size``, heartbeats, ``node_lost_after``,
            ``always_use_specified_node``, ``max_waiting_jobs``); a private default when omitted.
        curve: optional CURVE server settings (see ``reactor.net.security``).
        unique_store: a Redis URL (``redis://``, ``redis+cluster://``, ...) shared by the
            distributors whose ``unique_key`` enqueues must be unique together; without it a
            key is unique within this distributor.
        metrics_port: serve Prometheus metrics at ``http://127.0.0.1:PORT/metrics`` (0: a free
            port, see ``metrics_server.port``); None: no server (:attr:`metrics` still counts).
        metrics_host: the address the metrics server binds.
        announce: a Redis URL to register this distributor at, so nodes started with
            ``discover=`` find it (see :mod:`reactor.storage.discovery`).
        group: the application this distributor belongs to (distributors of one application,
            e.g. the workers of one web app, share a group).
        result_store: a Redis URL where final outcomes are kept for ``config["result_ttl"]``
            seconds, readable from any process (``JR.result``; see :mod:`reactor.storage.results`).
        outbox: a Redis URL for durable enqueue (``enqueue`` returns once the job is in Redis); the
            group's other or restarted distributors deliver a crashed one's jobs (see ``outbox``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        config: Config | None = None,
        curve: Any = None,
        unique_store: str | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        announce: str | None = None,
        group: str = "default",
        result_store: str | None = None,
        outbox: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.config = config if config is not None else Config()
        self.curve = curve
        self.session = secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(5)
        self._lock = threading.Lock()
        self._inbox = Inbox(self._deliver)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoint: Endpoint | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._max_args = 0
        self._closed = False
        self._stopping = False
        self.core: DistributorCore | None = None
        self.unique = UniqueKeys(unique_store)
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self._metrics_at = (metrics_host, metrics_port)
        #: Called after messages or cancels were handled, while a drain waits (on the loop).
        self.on_progress: Callable[[], None] | None = None
        self.draining = DrainState()  # how long drains waited, and whether to stop waiting
        self.announce = announce
        self.group = group
        self._announcer: Announcer | None = None
        self.result_store = result_store
        self.outbox = outbox
        self._outbox: Outbox | None = None
        results = None
        if result_store is not None:
            from reactor.storage.results import ResultWriter

            results = ResultWriter(result_store, ttl=float(self.config["result_ttl"]))
        self.outcomes = Outcomes(self.metrics, results)
        # The core's port for outcomes: the part's own methods, with no call in between.
        self.feedback = self.outcomes.feedback
        self.cancelled = self.outcomes.cancelled
        self.progress = self.outcomes.progress
        self.workflows = Workflows(self)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` as bound."""
        return f"{self.host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the distributor serves on (None before it starts)."""
        return self._loop

    @property
    def started(self) -> bool:
        """Whether the socket is bound and the distributor is serving."""
        return self._endpoint is not None

    @property
    def stats(self) -> dict[str, int]:
        """Delivery counters: feedback received, duplicates, unknown, stale, revokes, re-sends."""
        return {} if self.core is None else dict(self.core.stats)

    async def start(self) -> None:
        """Bind the socket and start serving; returns once bound (and announced)."""
        self.start_in_loop(asyncio.get_running_loop())
        if self._outbox is not None:
            try:
                await self._outbox.start()
            except BaseException:
                await self.stop()
                raise
        if self._announcer is not None:
            await self._announcer.start()

    def start_in_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind and serve on ``loop``; must be called from that loop's thread."""
        if self._endpoint is not None:
            return
        host, port = self._metrics_at  # first of what starting opens: a busy port leaves nothing
        if port is not None:
            self.metrics_server = self.metrics.serve(port, host, health=views.health(self, loop))
        self._loop = loop
        max_size = int(self.config["max_message_size"])
        self._max_args = max_size - 1024
        sock, self.port, guard = open_router(
            self.host, self.port, max_size=max_size, curve=self.curve
        )
        core = self.core = DistributorCore(
            self, address=self.address, session=self.session, config=self.config
        )
        self._endpoint = serve_router(loop, sock, guard, core, self._on_messages, max_size)
        self._tick_handle = loop.call_later(self.core.interval, self._tick)
        # The gauges, read when /metrics is scraped (from the metrics server's thread).
        self.metrics.read_state(lambda: views.metrics_state(self._inbox.jobs, core, self._endpoint))
        log.info("distributor listening on tcp://%s", self.address)
        self._outbox = open_outbox(self, loop, submit=self._accept_written, lock=self._lock)
        self._announcer = make_announcer(self)
        self._inbox.open(loop)

    async def drain(self, timeout: float | None = None) -> int:
        """Wait until a node has stored every job this distributor holds (DESIGN §3), at most
        ``timeout`` seconds (None: as long as it takes); returns how many are still unstored."""
        if self._closed or self.core is None:
            return 0
        return await wait_stored(self, timeout)

    async def stop(self, *, drain_timeout: float | None = None) -> int:
        """Drain, then stop serving; returns how many jobs no node had stored.

        New enqueues are refused from now on. Waits up to ``drain_timeout`` (default
        ``config["drain_timeout"]``) for a node to store every held job, then logs how many were
        not, and which names: at ERROR, as they are lost, unless they stay in an ``outbox=``
        for the group to deliver. Then says goodbye (the nodes run what they stored on their
        own: see ``farewell``); handles of unfinished jobs raise a ReactorError.
        """
        if self._closed or self._stopping:
            return 0
        self._stopping = True
        timeout = float(self.config["drain_timeout"] if drain_timeout is None else drain_timeout)
        await self.drain(timeout)
        lost = self.unstored()
        outbox, self._outbox = self._outbox, None
        kept_by = None if outbox is None else self.group
        drains = self.draining
        report_lost(self.address, lost, drains.waited, outbox=kept_by, cut=drains.cut)
        if outbox is not None:
            await outbox.stop(self._stored)
        await say_goodbye(self, self.core)
        await self.workflows.stop()  # durable flows are left to the group, not failed by the stop
        self.stop_in_loop()
        announcer, self._announcer = self._announcer, None
        if announcer is not None:
            await announcer.stop()
        if self.outcomes.results is not None:
            await self.outcomes.results.close()
        return len(lost)

    def stop_in_loop(self) -> None:
        """Stop at once, without draining, from the loop's thread (jobs not stored are lost)."""
        if self._closed:
            return
        self._closed = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._endpoint is not None:
            if self.core is not None:
                self.core.bye()
            self._endpoint.close(linger=GOODBYE_LINGER)
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        held = list(self.core.jobs.values()) if self.core is not None else []
        self.outcomes.stopped(held + self._inbox.clear())
        if self.core is not None:
            self.core.jobs.clear()
        self.unique.close()
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
        timeout: float | None = None,
        max_attempt: int | None = None,
        cron: str | None = None,
        tz: str | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        unique_for: float | None = None,
        tags: list[str] | None = None,
        on_progress: ProgressFeedback | None = None,
        **flow: Unpack[FlowOptions],
    ) -> JobHandle:
        """Send a job to a node; returns at once with a handle. Safe from any thread.

        ``timeout``, ``max_attempt`` override the job's ``@job`` options (and the node's
        settings); ``cron`` (read in ``tz``, UTC by default) runs the job on a schedule, like a
        periodic job; ``priority`` orders waiting jobs, higher first; ``tags`` label the job
        (found by ``reactor monitor jobs NODE --tag T``); ``on_progress(fraction, note)`` is
        called as the running attempt reports progress. A second enqueue with the
        same ``unique_key`` within ``unique_for`` seconds of the first sends nothing and returns
        the first job's handle (its feedback callables are the first enqueue's); see
        :mod:`reactor.distributor.unique`.

        Raises:
            TypeError: ``args`` is not a dict of msgpack-serializable values (the key is named),
                or an option has the wrong type.
            MessageTooLargeError: the encoded args exceed ``max_message_size``.
            ValueError: an invalid ``after``/``run_at``/``period``/``timeout``/``max_attempt``/
                ``priority``/``unique_for``/``tags``, a bad cron expression or time zone, or
                ``cron`` with ``after``, ``run_at`` or ``period``.
            BackPressureError: ``max_waiting_jobs`` jobs already wait for a node.
            ReactorError: the distributor is not started (or stopped).
        """
        # In EnqueueOptions' field order (a tuple is the cheapest way to build one).
        # fmt: off
        options = options_from((on_success, on_error, after, run_at, period, defer, node,
                                not_node, timeout, max_attempt, cron, tz, priority, unique_key,
                                unique_for, tags, None, on_progress,
                                flow or None))
        # fmt: on
        return self.submit(name, args, options)

    def submit(
        self, name: str, args: dict[str, Any] | None, options: EnqueueOptions = PLAIN
    ) -> JobHandle:
        """:meth:`enqueue` with its options gathered once (what ``JR.enqueue`` calls).

        Raises:
            As :meth:`enqueue`.
        """
        send = trace_hooks.send  # None unless reactor.tracing instrumented this process
        if send is not None and options.trace is None:
            sent = send(self.submit, name, args, options)
            if sent is not None:
                return sent
        self._admit()
        if type(name) is not str or not name or len(name) > P.MAX_NAME_LEN:
            raise TypeError(f"the job name must be a non-empty string, not {name!r}")
        if options[2:] == ROUTINE:  # the common case: the feedback callables at most
            on_success, on_error = options[0], options[1]
            if on_success is not None or on_error is not None:
                check_feedback(on_success, on_error)
            packed = P.pack_args({} if args is None else args, max_size=self._max_args)
            job_id = f"{self._id_prefix}{next(self._ids):x}"
            handle = JobHandle(job_id, name, self, self._lock, on_success, on_error)
            self._accept(JobState(job_id, name, packed, handle, time.time()))
            return handle
        delay, at, job_options = options.check()
        # One unpack reads every option at the cost of one attribute read.
        (on_success, on_error, _, _, period, defer, node, not_node, _, _,
         cron, _, priority, unique_key, unique_for, _, _, on_progress, _) = options  # fmt: skip
        period = None if period is None else float(period)
        packed = P.pack_args({} if args is None else args, max_size=self._max_args)
        job_id = f"{self._id_prefix}{next(self._ids):x}"
        spec = make_spec(at, period, bool(defer), job_options)
        handle = JobHandle(job_id, name, self, self._lock, on_success, on_error, on_progress)
        if unique_key is not None:
            foreign = functools.partial(
                ForeignJobHandle,
                name=name,
                unique_key=unique_key,
                owner=self,
                result_store=self.result_store,
            )
            first = self.unique.claim(unique_key, float(unique_for or 0.0), handle, foreign)
            if first is not handle:
                return first
        due = time.monotonic() + delay if delay else 0.0
        deferred = delay > 0.0 or at > 0.0 or period is not None
        periodic = period is not None or cron is not None
        job = JobState(job_id, name, packed, handle, time.time(), spec, due=due, deferred=deferred)
        job.route(node, not_node, priority, periodic=periodic)
        self._accept(job)
        return handle

    def enqueue_flow(
        self, flow: Flow, *, on_success: Feedback | None = None, on_error: Feedback | None = None
    ) -> FlowHandle:
        """Enqueue a workflow (``step``, ``chain``, ``group``, ``chord``), each step an ordinary
        job; returns at once with its handle. Safe from any thread (see ``workflows``).

        Raises:
            FlowError: ``flow`` is not a flow. TypeError: a feedback that is not callable.
            ReactorError: the distributor is not running.
        """
        return self.workflows.start(flow, on_success, on_error)

    # The two steps of an enqueue that the offline test distributors (reactor.testing) replace.

    def _admit(self) -> None:
        """Refuse an enqueue before any work: the distributor is not serving, or
        ``max_waiting_jobs`` jobs already wait (so a unique key is not taken either)."""
        core = self.core
        if self._loop is None or self._closed or self._stopping or core is None:
            raise ReactorError(
                "the distributor is not running (not started, stopping or stopped); start it "
                "before enqueueing"
            )
        if len(self._inbox.jobs) + core.router.waiting >= self.config["max_waiting_jobs"]:
            raise BackPressureError(
                f"{self.config['max_waiting_jobs']} jobs already wait for a node; start more "
                "nodes, slow down, or raise config['max_waiting_jobs']"
            )

    def _accept(self, job: JobState) -> None:
        """Take a checked job: the loop sends it to a node (after the outbox wrote it, if any)."""
        if self._outbox is not None:
            self._outbox.put(job)
            return
        self._inbox.put(job)

    def _accept_written(self, jobs: list[JobState]) -> None:
        """Take jobs the outbox has written (or taken over from a crashed member)."""
        core = self.core
        if core is None or self._closed:
            self.outcomes.stopped(jobs)
            return
        now = time.monotonic()
        for job in jobs:
            core.submit(job, now)
        core.pump(now)

    def _stored(self, job: JobState) -> bool:
        """Whether a node has stored ``job`` (or it ended): its outbox entry may go."""
        core = self.core
        return job.acked or core is None or core.jobs.get(job.id) is not job

    def timeout_hint(self) -> str:
        """For ``JobTimeoutError`` (any thread): no node connected, and how many jobs wait."""
        return views.no_node_hint(self.core, len(self._inbox), self.address)

    def cancel(self, job_id: str) -> None:
        """Cancel a job by id (what ``handle.cancel()`` calls). Safe from any thread."""
        self._inbox.cancel(job_id)

    def _deliver(self) -> None:
        """On the loop: hand what was enqueued and cancelled to the core."""
        core = self.core
        if core is None or self._closed:
            return
        self._inbox.hand_to(core, time.monotonic())
        if self.on_progress is not None:
            self.on_progress()

    # -- the core's port ------------------------------------------------------------------------

    def send(self, peer: bytes, message: P.Message | list[Any]) -> None:
        """Queue a message for a node (the core's port)."""
        if self._endpoint is not None:
            self._endpoint.send(peer, message)

    # -- the socket and the clock ---------------------------------------------------------------

    def _on_messages(self, peer: bytes | None, messages: list[P.Message]) -> None:
        assert peer is not None and self.core is not None
        try:
            name, _ = P.parse_routing_id(peer)
        except UnicodeDecodeError:
            log.warning("dropped messages from a peer whose routing id is not UTF-8: %r", peer[:40])
            return
        self.core.on_messages(name, peer, messages, time.monotonic())
        if self.on_progress is not None:
            self.on_progress()

    def _tick(self) -> None:
        loop = self._loop
        core = self.core
        if self._closed or loop is None or self._endpoint is None or core is None:
            return
        self._tick_handle = loop.call_later(core.interval, self._tick)
        self._endpoint.on_ready()  # read what queued while we were busy before judging anyone
        core.tick(time.monotonic())
        if self._announcer is not None:
            self._announcer.renew()
        if self._outbox is not None:
            self._outbox.tick(self._stored)
            self.workflows.tick()

    # -- live view ------------------------------------------------------------------------------

    def unstored(self) -> list[JobState]:
        """Jobs held that no node has stored yet: queued, waiting, or sent and unacknowledged."""
        return views.unstored(self._inbox.jobs, self.core)

    def unstored_count(self) -> int:
        """``len(unstored())`` without building the list (call on the distributor's loop)."""
        return len(self._inbox) + (self.core.held() if self.core is not None else 0)

    def node_alive(self, name: str) -> bool:
        """Whether node ``name`` is connected and up (call on the distributor's loop)."""
        return self.core is not None and self.core.node_alive(name)

    def snapshot(self) -> dict[str, Any]:
        """The live view as plain data (nodes, load, waiting and in-flight jobs), on its loop."""
        core = self.core
        if core is None:
            return {"address": self.address, "nodes": [], "waiting": len(self._inbox)}
        return views.snapshot(
            core,
            len(self._inbox),
            self._endpoint,
            address=self.address,
            session=self.session,
            finished=self.outcomes.finished,
        )
