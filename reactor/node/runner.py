"""Runs the jobs a node's core lets start: the node driver's run loop.

``def`` chains run straight from the ready queue, many per loop iteration, with no task per job,
while the :class:`~reactor.node.watchdog.Watchdog` may act for the held loop; ``async def``
chains and ``defer=True`` bodies run as tasks. Which job starts when (priorities, held links,
unknown names, capacity, write-ahead) is the core's :meth:`~reactor.core.node.NodeCore.start_next`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from reactor.config import Config
from reactor.core.node import NodeCore
from reactor.errors import ProtocolError
from reactor.jobs import context
from reactor.jobs.chain import run_async, run_sync, run_sync_limited
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry
from reactor.net.link import Link
from reactor.node.attempts import Attempts
from reactor.node.watchdog import Watchdog
from reactor.node.write_ahead import WriteAhead
from reactor.ops import trace_hooks
from reactor.ops.metrics import Metrics
from reactor.storage.base import Storage
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.node.cancels import StoredCancels

log = logging.getLogger("reactor.node")

#: Seconds of ``def`` jobs run back to back before the loop serves I/O again.
RUN_SLICE = 0.005


class Runner:
    """A node's run loop (see the module docstring); :meth:`attach` it once the core exists.

    Args:
        name: the node's name (for ``job_itself``).
        config: the node's settings (``merge_job_itself_to_args``).
        metrics: counts attempts and their durations.
        spawn: runs a coroutine as one of the node's tasks.
        ran: called after each run of the loop and each async attempt (idle and settled checks).
    """

    def __init__(
        self,
        name: str,
        *,
        config: Config,
        metrics: Metrics,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        ran: Callable[[], None],
    ) -> None:
        self.name = name
        self.merge_job_itself = bool(config["merge_job_itself_to_args"])
        self.metrics = metrics
        self.spawn = spawn
        self.ran = ran
        self.core: NodeCore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ahead: WriteAhead | None = None  # durable storage: jobs start once written
        self.links: Mapping[str, Link] = {}  # the node's links, for the watchdog
        self.executor: ThreadPoolExecutor | None = None
        self.watchdog: Watchdog | None = None
        self.scheduled = False
        self.closed = False
        #: The running attempts: contexts, async tasks, cancels, progress.
        self.attempts = Attempts()
        self.interrupt = self.attempts.interrupt
        self.storage: Storage | None = None
        self.cancels: StoredCancels | None = None  # the monitor's cancels (Redis storage)

    def attach(
        self,
        core: NodeCore,
        loop: asyncio.AbstractEventLoop,
        *,
        ahead: WriteAhead | None,
        executor: ThreadPoolExecutor,
        storage: Storage | None = None,
    ) -> None:
        """Run ``core``'s jobs on ``loop`` from now on (``storage``: the node's, whose
        monitor's cancels it hears when it keeps jobs in Redis)."""
        self.core = core
        self.loop = loop
        self.ahead = ahead
        self.executor = executor
        self.storage = storage
        self.attempts.attach(core, loop)

    def kick(self) -> None:
        """Jobs are ready: run them soon (the core's port)."""
        if not self.scheduled and self.loop is not None and not self.closed:
            self.scheduled = True
            self.loop.call_soon(self.run_ready)

    def run_ready(self) -> None:
        """Start every job the core lets start, running ``def`` ones for up to RUN_SLICE s."""
        self.scheduled = False
        core = self.core
        if core is None or self.closed:
            return
        ahead = self.ahead
        wall = time.time()
        now = time.monotonic()
        if ahead is not None:
            ahead.collect(now, wall)
        now = self._drain(core, ahead, now, wall)
        if now < 0.0:  # the slice is over: the rest runs after the loop served I/O
            queue = core.queue
            if queue.ready or queue.ranked or queue.fair.size or (ahead and ahead.written):
                self.kick()
            return
        if ahead is not None:  # room again: the written jobs ran (and freed their slots)
            ahead.collect(now, wall)
        self.ran()

    def _drain(self, core: NodeCore, ahead: WriteAhead | None, now: float, wall: float) -> float:
        """Start jobs until none may start (returns the time) or the slice is over (returns -1).

        A ``def`` job runs right here, the watchdog watching while it holds the loop.
        """
        deadline = now + RUN_SLICE
        start_next = core.start_next
        metrics = self.metrics
        attempt_args = self.attempt_args
        watchdog = self.watchdog
        traced = trace_hooks.process  # None unless reactor.tracing instrumented this process
        while True:
            started = start_next(now, wall) if ahead is None else ahead.next_written(now)
            if started is None:
                return now
            job, entry = started
            if entry.is_async or job.defer:
                self.spawn(self.run_async(job, entry))
                continue
            try:
                args = attempt_args(job)
            except ProtocolError as exc:
                metrics.record_failed(job)
                core.fail(job, "ProtocolError", f"the job's args do not decode: {exc}", now, wall)
                continue
            began = now
            fresh = partial(attempt_args, job)
            limit = job.timeout or entry.timeout  # the enqueue's, else the @job's
            scope = None if traced is None else traced(job, self.name)
            token = context.enter(self.attempts.open(job))
            if watchdog is not None:
                watchdog.job = job  # what job_started() does, inlined on this hot path
                watchdog.job_since = now
                watchdog.job_limit = limit
                watchdog.lock.release()  # def chains touch no socket: the watchdog may
            try:
                attempt = (
                    run_sync(entry, args, fresh)
                    if limit is None
                    else run_sync_limited(entry, args, fresh, limit)
                )
            finally:
                context.leave(token)
                if watchdog is not None:
                    watchdog.lock.acquire()
                    watchdog.job_since = 0.0
                    if watchdog.handed_back and watchdog.job_ended():
                        core.blocked = False
                        core.announce(time.monotonic())
            if scope is not None:
                scope.end(attempt)
            now = time.monotonic()
            self.attempts.close(job)
            core.finished(job, attempt, now, wall)
            metrics.attempt_ended(job, now - began)
            if now > deadline:
                return -1.0

    def watch(self, config: Config, links: Mapping[str, Link]) -> None:
        """Start the watchdog that acts for the loop while a ``def`` job holds it, on the
        sockets of ``links`` (the node's, kept up to date by the node)."""
        core = self.core
        assert core is not None
        self.links = links
        self.watchdog = Watchdog(
            interval=core.interval,
            beat=core.announce,
            hand_back=self._hand_back_blocked,
            flush=self._flush_links,
            read=self._read_links,
            hand_back_after=float(config["hand_back_after"]),
            slow_warning=float(config["slow_job_warning"]),
        )
        self.watchdog.start()
        self.attempts.watchdog = self.watchdog
        if self.storage is not None and self.storage.retries:  # jobs the monitor can reach
            from reactor.node.cancels import StoredCancels
            from reactor.node.progress_writer import ProgressWriter

            self.cancels = StoredCancels.of(self.storage, self.name, self._cancel_stored)
            if self.cancels is not None:
                self.cancels.start()
            ttl = float(config["result_ttl"])
            self.attempts.stored = ProgressWriter.of(self.storage, self.name, ttl)

    def holding(self) -> str | None:
        """The ``def`` job that holds the loop now and for how long, or None (from any thread:
        what ``/healthz`` says of a held loop)."""
        watchdog = self.watchdog
        if watchdog is None:
            return None
        since, job = watchdog.job_since, watchdog.job
        if not since or job is None:
            return None
        held = time.monotonic() - since
        return f"def job {job.name!r} ({job.id}) holds the loop for {held:.1f} s"

    def unwatch(self) -> None:
        """Stop the watchdog, the monitor's cancels and the progress writer (the node closes)."""
        if self.cancels is not None:
            self.cancels.stop()
            self.cancels = None
        if self.attempts.stored is not None:
            self.attempts.stored.stop()
            self.attempts.stored = None
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    def _hand_back_blocked(self, now: float) -> int:
        """The watchdog's hand-back: a def job holds the loop, the due jobs go elsewhere."""
        core = self.core
        assert core is not None
        core.blocked = True
        count = core.hand_back_ready(now, "a def job holds the node's loop")
        core.announce(now)
        return count

    def _cancel_stored(self, job_id: str) -> None:
        """The monitor cancels a stored job (the listener's thread): on the loop; a def job
        holding the loop is told at once, here under the watchdog's lock (as the watchdog acts)."""
        watchdog, loop = self.watchdog, self.loop
        core = self.core
        if (
            core is not None
            and watchdog is not None
            and watchdog.job_since
            and watchdog.lock.acquire(timeout=0.05)
        ):
            try:
                if watchdog.job_since:  # still held: the loop thread is in a def job's body
                    core.intake.cancel_running(job_id, None)
            finally:
                watchdog.lock.release()
        if loop is not None and not self.closed:
            with contextlib.suppress(RuntimeError):  # a closed loop: the node is gone
                loop.call_soon_threadsafe(self._cancel_here, job_id)

    def _cancel_here(self, job_id: str) -> None:
        core = self.core
        if core is not None and core.intake.cancel_here(job_id, time.monotonic()):
            log.info("node %s: job %s cancelled by the monitor", self.name, job_id)

    def _flush_links(self) -> None:
        """The watchdog sends what it queued (its thread holds the lock)."""
        for link in list(self.links.values()):
            if link.endpoint is not None:
                link.endpoint.flush_from_thread()

    def _read_links(self, now: float) -> None:
        """The watchdog reads the sockets while a ``def`` job holds the loop after a hand-back:
        jobs that arrive are refused at once (the core is blocked), so their distributors send
        them to a node with room; every other message waits for the loop, in order."""
        for key, link in list(self.links.items()):
            if link.endpoint is not None:
                link.endpoint.read_from_thread(partial(self._take_jobs, key, now))

    def _take_jobs(
        self, key: str, now: float, _: object, messages: list[P.Message]
    ) -> list[P.Message]:
        """Jobs are refused here; a cancel of the def job holding the loop turns its
        ``current_job().cancelled`` True now (the cancel is handled on the loop all the same)."""
        core = self.core
        if core is None:
            return messages
        for message in messages:
            if type(message) is P.Cancel:
                for job_id, asg in message.items:
                    core.intake.cancel_running(job_id, asg)
        jobs: list[P.Message] = [m for m in messages if type(m) is P.Job]
        if not jobs:
            return messages
        core.on_messages(key, jobs, now, time.time())
        return [m for m in messages if type(m) is not P.Job]

    async def run_async(self, job: JobRecord, entry: JobEntry) -> None:
        """Run a begun ``async def`` job or ``defer=True`` body; its slot frees at the end."""
        core = self.core
        assert core is not None
        try:
            try:
                args = self.attempt_args(job)
            except ProtocolError as exc:
                self.metrics.record_failed(job)
                message = f"the job's args do not decode: {exc}"
                core.fail(job, "ProtocolError", message, time.monotonic(), time.time())
                return
            began = time.monotonic()
            traced = trace_hooks.process  # the span is current in the task (and its thread)
            scope = None if traced is None else traced(job, self.name)
            attempt = await self._attempt(job, entry, args)
            if scope is not None:
                scope.end(attempt)
            now = time.monotonic()
            self.attempts.close(job)
            core.finished(job, attempt, now, time.time())
            self.metrics.attempt_ended(job, now - began)
        finally:
            core.slot_freed()
            self.ran()

    async def _attempt(self, job: JobRecord, entry: JobEntry, args: dict[str, Any]) -> Attempt:
        """Run the chain in this task with the attempt's context current; an ``async def``
        chain a cancel reaches gets ``CancelledError`` (then it ends cancelled)."""
        context.enter(self.attempts.open(job))  # this task's own context: no reset needed
        task = asyncio.current_task()
        if task is not None and not job.defer:
            self.attempts.watch_task(job, task)
        try:
            return await run_async(
                entry,
                args,
                lambda: self.attempt_args(job),
                executor=self.executor if job.defer else None,
                timeout=job.timeout or entry.timeout,
            )
        except asyncio.CancelledError:
            if not job.interrupted or task is None or task.uncancel() > 0:
                raise  # the node stops: its tasks are cancelled
            return Attempt(Outcome.CANCELLED, args, None)
        finally:
            if job.interrupted and task is not None and task.cancelling():
                task.uncancel()  # the body swallowed the CancelledError

    def attempt_args(self, job: JobRecord) -> dict[str, Any]:
        """The args an attempt of ``job`` runs with (``job_itself`` merged in if configured)."""
        args = P.unpack_args(job.args)
        if self.merge_job_itself:
            args["job_itself"] = {
                "id": job.id,
                "name": job.name,
                "args": dict(args),
                "attempt": job.attempt,
                "status": job.status,
                "make_after": job.make_after,
                "distributor": job.distributor,
                "node": self.name,
                "run_at": job.run_at,
                "period": job.period,
                "defer": job.defer,
                "tags": list(job.tags) if job.tags else [],
            }
        return args
