"""The attempts running on a node as job code sees them: each one's :class:`JobContext`, the
task of an ``async def`` one, cancels that reach them, and their progress reports.

A cancel that reaches a running attempt (the core's ``interrupt`` port) cancels the task of an
``async def`` job (``CancelledError`` at its next await) and turns ``current_job().cancelled``
True for every kind. Progress reports are coalesced per job: one goes out at once, later ones at
most every :data:`PROGRESS_EVERY` seconds, and the last one before the attempt ends always goes
out, ahead of the outcome. They are not acknowledged: progress is a hint, not a record. A node
keeping its jobs in Redis also stores each job's latest report for the dashboard
(:class:`~reactor.node.progress_writer.ProgressWriter`, about once a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from reactor.jobs import record as R
from reactor.jobs.context import JobContext
from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.core.node import NodeCore
    from reactor.node.progress_writer import ProgressWriter
    from reactor.node.watchdog import Watchdog

#: Seconds between two progress reports of one job sent to its distributor (about 10 a second).
PROGRESS_EVERY = 0.1


class Attempts:
    """The running attempts of one node (see the module docstring); used on the loop thread,
    except :meth:`report`, which any thread may call."""

    def __init__(self) -> None:
        self.contexts: dict[str, JobContext] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.core: NodeCore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread = 0
        #: The watchdog, whose lock a ``def`` job on the loop takes to send (it may hold the
        #: sockets meanwhile).
        self.watchdog: Watchdog | None = None
        self.pending: dict[str, tuple[JobRecord, float, str | None]] = {}
        self.sent_at: dict[str, float] = {}
        #: Stores each running job's latest progress for the dashboard (Redis storage only).
        self.stored: ProgressWriter | None = None

    def attach(self, core: NodeCore, loop: asyncio.AbstractEventLoop) -> None:
        """Serve ``core``'s attempts on ``loop`` (called on the loop thread)."""
        self.core = core
        self.loop = loop
        self.loop_thread = threading.get_ident()

    def open(self, job: JobRecord) -> JobContext:
        """The context of an attempt of ``job`` that starts now."""
        ctx = JobContext(job.id, job.name, job.attempt, partial(self.report, job, job.attempt))
        ctx.cancelled = job.interrupted
        self.contexts[job.id] = ctx
        return ctx

    def watch_task(self, job: JobRecord, task: asyncio.Task[Any]) -> None:
        """``task`` runs ``job``'s ``async def`` chain: a cancel cancels it (one that came
        before the task began takes effect at its first await)."""
        self.tasks[job.id] = task
        if job.interrupted:
            task.cancel("the job was cancelled")

    def close(self, job: JobRecord) -> None:
        """The attempt of ``job`` has ended (before its outcome is handled): its last progress
        report goes out now, later ones are dropped."""
        self.tasks.pop(job.id, None)
        self.contexts.pop(job.id, None)
        self.sent_at.pop(job.id, None)
        entry = self.pending.pop(job.id, None)
        if entry is not None:
            self._send(*entry)
        if self.stored is not None:
            self.stored.end(job.id)

    def interrupt(self, job: JobRecord) -> None:
        """A cancel reached ``job``'s running attempt (the core's port)."""
        ctx = self.contexts.get(job.id)
        if ctx is not None:
            ctx.cancelled = True
        task = self.tasks.get(job.id)
        if task is not None and not task.done():
            task.cancel("the job was cancelled")

    # -- progress ---------------------------------------------------------------------------------

    def report(self, job: JobRecord, attempt: int, fraction: float, note: str | None) -> None:
        """A progress report of attempt ``attempt`` of ``job`` (from any thread)."""
        loop = self.loop
        if loop is None:
            return
        if threading.get_ident() != self.loop_thread:
            with contextlib.suppress(RuntimeError):  # a closed loop: the node is gone
                loop.call_soon_threadsafe(self._take, job, attempt, fraction, note)
            return
        self._take(job, attempt, fraction, note)

    def _take(self, job: JobRecord, attempt: int, fraction: float, note: str | None) -> None:
        if job.attempt != attempt or job.phase != R.RUNNING or job.id not in self.contexts:
            return  # a late report: its attempt has ended
        if self.stored is not None:
            self.stored.offer(job.id, attempt, fraction, note)
        now = time.monotonic()
        due = self.sent_at.get(job.id, 0.0) + PROGRESS_EVERY
        if now >= due:
            self.pending.pop(job.id, None)
            self.sent_at[job.id] = now
            self._send(job, fraction, note)
            return
        if job.id not in self.pending and self.loop is not None:
            self.loop.call_later(due - now, self._flush, job.id)
        self.pending[job.id] = (job, fraction, note)

    def _flush(self, job_id: str) -> None:
        entry = self.pending.pop(job_id, None)
        if entry is not None:
            self.sent_at[job_id] = time.monotonic()
            self._send(*entry)

    def _send(self, job: JobRecord, fraction: float, note: str | None) -> None:
        core = self.core
        if core is None:
            return
        link = core.outcomes.handable(job)
        if link is None:
            return  # not durable: a report its distributor cannot take now is dropped
        message = P.Progress(job.id, job.asg, fraction, note)
        watchdog = self.watchdog
        if watchdog is not None and watchdog.job_since:  # a def job holds the loop
            with watchdog.lock:
                core.port.send(link.key, message)
        else:
            core.port.send(link.key, message)
