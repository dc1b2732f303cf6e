"""The node's driver: sockets, storage and timers around a :class:`NodeCore`.

The jobs the core lets start run in :class:`~reactor.node.runner.Runner`: ``def`` chains straight
from the ready queue, ``async def`` chains and ``defer=True`` bodies as tasks, at most
``capacity`` at once. The delivery logic (fencing, re-sends, sync, hand-back, lifecycle, which
job starts when) is :mod:`reactor.core.node`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reactor.config import Config, check_value
from reactor.core.lifecycle import RetryPolicy
from reactor.core.node import NodeCore
from reactor.errors import NodeNameTaken, ReactorError
from reactor.jobs.loader import load_jobs
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobRegistry
from reactor.net.link import Link, parse_address
from reactor.node.idle import IdleWaiters
from reactor.node.keeper import StorageKeeper
from reactor.node.reachability import Reachability
from reactor.node.runner import Runner
from reactor.node.views import metrics_state, no_such_job, not_ready, snapshot
from reactor.node.write_ahead import WriteAhead
from reactor.ops.health import Health
from reactor.ops.metrics import Metrics, MetricsServer
from reactor.storage import Storage, adopted_gate, limits_gate, resolve_storage
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.node.follower import Follower

log = logging.getLogger("reactor.node")

_NAME_RE = re.compile(rf"[A-Za-z0-9_.:@-]{{1,{P.MAX_NODE_NAME_LEN}}}")


class Node:
    """A worker process's job runner, connected to one or more distributors.

    Args:
        name: the node's name (its routing id; jobs pinned with ``node=`` use it).
        distributors: ``"host:port"`` strings or ``(host, port)`` pairs to dial.
        storage: ``"memory_storage"``, ``"redis_storage"``, a ``redis://`` URL, or a Storage.
        job_directory: where the job files are (default: ``config["job_directory"]``).
        registry: a ready JobRegistry instead of loading files (tests, all-in-one programs).
        capacity: how many jobs the node takes at once (default: ``config["node_capacity"]``).
        config: settings; a snapshot is taken at construction.
        curve: optional CURVE client settings (see ``reactor.net.security``).
        metrics_port: serve ``http://127.0.0.1:PORT/metrics`` (0: a free port); None: no server.
        metrics_host: the address the metrics server binds.
        discover: a Redis URL where distributors announce themselves (the node follows them).
    """

    def __init__(
        self,
        name: str,
        *,
        distributors: Sequence[str | tuple[str, int]] = (),
        storage: str | Storage = "memory_storage",
        job_directory: str | Path | None = None,
        registry: JobRegistry | None = None,
        capacity: int | None = None,
        config: Config | None = None,
        curve: Any = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        discover: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"invalid node name {name!r}: use 1-{P.MAX_NODE_NAME_LEN} letters, digits and "
                "_ - . : @"
            )
        self.name = name
        self.config = (config if config is not None else Config()).copy()
        wanted = self.config["node_capacity"] if capacity is None else capacity
        self.capacity = int(check_value("node_capacity", wanted))  # >= 1, or a ConfigError
        self.session = secrets.token_hex(8)
        self.job_directory = Path(job_directory or self.config["job_directory"])
        self._storage_spec = storage
        self.registry = registry
        self.curve = curve
        self._links: dict[str, Link] = {}
        for address in distributors:
            host, port = parse_address(address)
            key = f"{host}:{port}"
            self._links[key] = Link(key, self._on_messages, curve=curve)
        self._static = set(self._links)
        self.discover = discover
        self._follower: Follower | None = None
        self.storage: Storage | None = None
        self.core: NodeCore | None = None
        self.error: ReactorError | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._executor: ThreadPoolExecutor | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_due = float("inf")
        self._keeper: StorageKeeper | None = None
        self._idle = IdleWaiters()
        self._answered: asyncio.Event | None = None
        self._stopping = False
        self._settled: asyncio.Event | None = None
        self._closed = False
        self.stopped: asyncio.Event | None = None
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self._metrics_at = (metrics_host, metrics_port)
        self._reach = Reachability(name, self.metrics.reconnected)
        self._runner = Runner(
            name, config=self.config, metrics=self.metrics, spawn=self._spawn, ran=self._ran
        )
        #: The core's ports its parts answer: jobs are ready (the runner runs them soon); an
        #: attempt begins (counted before its ``run_at`` moves); a job ends cancelled without
        #: running (counted); a cancel reaches a running attempt (the runner stops or flags it).
        self.kick = self._runner.kick
        self.starting = self.metrics.attempt_started
        self.cancelled = self.metrics.record_cancelled
        self.interrupt = self._runner.interrupt

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the jobs, open storage, resume stored jobs, and dial every distributor.

        Returns once every distributor has welcomed the node, or after a few heartbeat
        intervals for those that have not answered (the node keeps dialing them).

        Raises:
            NodeNameTaken: a distributor already has a live node of this name.
        """
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.stopped = asyncio.Event()
        self._answered = asyncio.Event()
        if self.registry is None:
            self.registry = load_jobs(self.job_directory)
        host, port = self._metrics_at  # first of what start() opens: a busy port leaves nothing
        if port is not None:
            health = Health(loop, ready=lambda: not_ready(self.core), holder=self._runner.holding)
            self.metrics_server = self.metrics.serve(port, host, health=health)
        self._executor = ThreadPoolExecutor(
            max_workers=int(self.config["defer_threads"]),
            thread_name_prefix=f"reactor-{self.name}-defer",
        )
        self.storage = resolve_storage(self._storage_spec, redis_url=self.config["redis_url"])
        self.storage.on_written = self.metrics.storage_written
        await self.storage.start(self.name)
        if self.discover is not None:
            from reactor.node.follower import Follower

            self._follower = Follower(
                self.discover, join=self.add_distributor, leave=self.remove_distributor
            )
            await self._follower.start()
        core = self.core = NodeCore(
            self,
            name=self.name,
            session=self.session,
            links=list(self._links),
            config=self.config,
            capacity=self.capacity,
            job_names=self.registry.names(),
            durable=self.storage.durable,
            where=f"host {socket.gethostname()} pid {os.getpid()}",
            policies=RetryPolicy.for_registry(
                self.registry,
                max_attempt=int(self.config["max_attempt"]),
                retry_multiplier=float(self.config["retry_multiplier"]),
            ),
            kinds=self.registry.get,
            gate=limits_gate(self.config, self._spawn),
        )
        keeper = self._keeper = StorageKeeper(
            self.name,
            self.storage,
            core,
            metrics=self.metrics,
            spawn=self._spawn,
            serving=lambda: not self._stopping and not self._closed,
            result_store=self.config["result_store"],
            result_ttl=float(self.config["result_ttl"]),
            kept_ttl=self.config["kept_jobs_ttl"],
            kept_max=self.config["kept_jobs_max"],
        )
        self.storage.on_poisoned = keeper.on_poisoned
        ahead = WriteAhead(core, self.storage, kick=self.kick) if self.storage.durable else None
        self._runner.attach(core, loop, ahead=ahead, executor=self._executor, storage=self.storage)
        if self.config["retry_jobs_at_start"]:
            core.resume(await self.storage.unfinished(), time.monotonic(), time.time())
        core.started = True
        if self.storage.retries:
            self._spawn(keeper.take_retried())
        max_size = int(self.config["max_message_size"])
        for link in self._links.values():
            link.open(loop, P.routing_id(self.name, self.session), max_size)
        self._tick()
        self._runner.watch(self.config, self._links)
        self.metrics.read_state(lambda: metrics_state(self.core, self._links.values()))
        log.info(
            "node %s started: %d jobs known, capacity %d, %s storage, distributors %s",
            self.name,
            len(self.registry),
            self.capacity,
            type(self.storage).__name__,
            ", ".join(self._links) or "none",
        )
        if self._links:
            wait = 4.5 * core.interval + 0.5  # past the probation of a name (core.liveness)
            with contextlib.suppress(TimeoutError):  # reachability warns about silent ones
                await asyncio.wait_for(self._answered.wait(), wait)
        if self.error is not None:
            await self.close()
            raise self.error

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking jobs, hand back those not started, finish running ones; await acks."""
        if self._stopping or self.core is None:
            return
        self._stopping = True
        core = self.core
        grace = float(self.config["shutdown_grace"] if grace is None else grace)
        handed = core.stop(time.monotonic())
        if handed:
            log.info("node %s: handed %d jobs back to their distributors", self.name, handed)
        self._settled = asyncio.Event()
        self._check_settled()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), grace)
        if not core.settled:
            log.warning(
                "node %s: stopping with %d jobs running or unacknowledged after %.1fs",
                self.name,
                core.running,
                grace,
            )
        core.keep_unacknowledged()
        core.bye()
        await asyncio.sleep(0)  # let the byes leave
        await self.close()

    async def close(self) -> None:
        """Release everything at once, without waiting for running jobs."""
        if self._closed:
            return
        self._closed = True
        self._runner.closed = True
        self._stop_timers()
        if self._follower is not None:
            await self._follower.stop()
        for task in list(self._tasks):
            task.cancel()
        for link in self._links.values():
            link.close()
        if self._keeper is not None:
            await self._keeper.close()
        if self.storage is not None:
            try:
                await self.storage.close()
            except Exception:
                log.exception("closing storage failed")
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._idle.release()
        if self.stopped is not None:
            self.stopped.set()

    def _stop_timers(self) -> None:
        """Cancel the tick and the job timer; stop the watchdog and the metrics server."""
        for handle in (self._tick_handle, self._timer_handle):
            if handle is not None:
                handle.cancel()
        self._runner.unwatch()
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def until_idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is ready or running (jobs on timers may remain)."""
        if not self.idle:
            assert self._loop is not None
            await self._idle.wait(self._loop, timeout)

    @property
    def idle(self) -> bool:
        """Whether no job is ready or running."""
        return self.core is None or self.core.idle

    @property
    def accepting(self) -> bool:
        """Whether the node takes new jobs."""
        return self.core is not None and self.core.accepting

    @property
    def jobs(self) -> dict[str, JobRecord]:
        """The records the node holds, by id."""
        return self.core.jobs if self.core is not None else {}

    @property
    def stats(self) -> dict[str, int]:
        """Counters: received, succeeded, failed, cancelled, attempts."""
        return self.core.stats if self.core is not None else {}

    # -- the core's port ------------------------------------------------------------------------

    def add_distributor(self, address: str | tuple[str, int]) -> None:
        """Dial one more distributor from now on (call on the node's loop)."""
        host, port = parse_address(address)
        key = f"{host}:{port}"
        if key in self._links or self._closed:
            return
        link = self._links[key] = Link(key, self._on_messages, curve=self.curve)
        if self.core is not None and self._loop is not None:
            link.open(
                self._loop,
                P.routing_id(self.name, self.session),
                int(self.config["max_message_size"]),
            )
            self.core.add_link(key, time.monotonic())

    def remove_distributor(self, address: str | tuple[str, int]) -> None:
        """Stop serving a distributor that is gone for good (call on the node's loop); one
        given to the constructor stays."""
        host, port = parse_address(address)
        key = f"{host}:{port}"
        if key in self._static:
            return
        link = self._links.pop(key, None)
        if link is None:
            return
        if self.core is not None:
            self.core.remove_link(key, time.monotonic())
        link.close()

    def send(self, link: str, message: P.Message | list[Any]) -> None:
        """Queue a message to a distributor (from the watchdog thread too)."""
        known = self._links.get(link)  # None: a withdrawn distributor's message from a thread
        if known is None or known.endpoint is None:
            return
        endpoint = known.endpoint
        if threading.get_ident() != self._loop_thread:
            endpoint.queue(None, message)
        elif type(message) is P.Hello:
            known.send(message)
        else:
            endpoint.send(None, message)

    def store(self, link: str, records: list[JobRecord]) -> bool:
        """Persist new records (the core's port); False: the answer comes from a task."""
        assert self._keeper is not None
        return self._keeper.store(link, records)

    def write(self, record: JobRecord) -> None:
        """Persist a record's state, written behind (the core's port)."""
        assert self.storage is not None
        self.storage.update(record)

    def remove(self, record: JobRecord) -> None:
        """Forget a record in storage (the core's port)."""
        assert self.storage is not None
        self.storage.remove(record)

    def exists(self, records: list[JobRecord]) -> list[bool] | None:
        """Whether records still exist, now or from a task (the core's port)."""
        assert self._keeper is not None
        return self._keeper.exists(records)

    def arm(self, due: float) -> None:
        """Wake the core at monotonic ``due`` (the core's port)."""
        loop = self._loop
        if loop is None or self._closed:
            return
        if self._timer_handle is not None:
            if due >= self._timer_due:
                return
            self._timer_handle.cancel()
        self._timer_due = due
        self._timer_handle = loop.call_at(loop.time() + (due - time.monotonic()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer_handle = None
        self._timer_due = float("inf")
        if self.core is not None and not self._closed:
            self.core.fire_timers(time.monotonic(), time.time())

    def unknown(self, job: JobRecord) -> str:
        """No job of this name here: counted; the message it fails with (the core's port)."""
        self.metrics.record_failed(job)
        return no_such_job(self.name, job.name, self.job_directory)

    def adopt_limits_store(self, url: str) -> None:
        """A distributor's ``limits_store``, for a node with none of its own (the core's port)."""
        if self.core is not None:
            self.core.limits.use_gate(adopted_gate(self.config, self._spawn, url))

    def keep_result(self, name: str, message: list[Any]) -> None:
        """Keep a final outcome in the result store (the core's port)."""
        if self._keeper is not None:
            self._keeper.keep_result(name, message)

    def refused(self, link: str, kind: str, reason: str) -> None:
        """A distributor refused this node: it cannot serve under this name (the core's port)."""
        error: ReactorError = (
            NodeNameTaken(reason)
            if kind == "NodeNameTaken"
            else ReactorError(f"distributor {link} refused node {self.name}: {kind}: {reason}")
        )
        log.error("node %s: distributor %s refused it: %s: %s", self.name, link, kind, reason)
        self.error = error
        if self._answered is not None:
            self._answered.set()
        if not self._stopping and self.core is not None and self.core.started:
            self._spawn(self.stop(grace=0.0))

    # -- messages and time ----------------------------------------------------------------------

    def _on_messages(self, link: Link, messages: list[P.Message]) -> None:
        core = self.core
        if core is None:
            return
        core.on_messages(link.key, messages, time.monotonic(), time.time())
        answered = self._answered
        if (
            answered is not None
            and not answered.is_set()
            and all(s.welcomed or s.refused for s in core.links.values())
        ):
            answered.set()
        if self._settled is not None:
            self._check_settled()

    def _check_settled(self) -> None:
        core, settled = self.core, self._settled
        if settled is not None and core is not None and (core.settled or self.error is not None):
            settled.set()

    def _tick(self) -> None:
        loop = self._loop
        core = self.core
        if loop is None or core is None or self._closed:
            return
        self._tick_handle = loop.call_later(core.interval, self._tick)
        for link in self._links.values():  # read what queued while we were busy first
            if link.endpoint is not None:
                link.endpoint.on_ready()
        now = time.monotonic()
        if self._runner.watchdog is not None:
            self._runner.watchdog.loop_beat = now
        core.tick(now, time.time())
        for key, state in core.links.items():
            self._reach.check(key, state.welcomed, now)

    def _ran(self) -> None:
        """The runner ran jobs: wake those waiting for the node to be idle or settled."""
        self._idle.check(self.idle)
        if self._settled is not None:
            self._check_settled()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._settled is not None:
            self._check_settled()
        if not task.cancelled() and task.exception() is not None:
            log.error("node task failed", exc_info=task.exception())

    # -- introspection --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The node's live view as plain data."""
        return snapshot(self.name, self.core)
