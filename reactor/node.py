"""The node: a named worker that stores the jobs it is sent and runs their chains on one loop.

``def`` chains run straight from the ready queue, many per loop iteration, with no task per job;
``async def`` chains and ``defer=True`` bodies run as tasks, at most ``capacity`` at once. Deferred,
periodic and retried jobs wait on a :class:`~reactor.timers.TimerQueue`, never on polling.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from reactor import protocol as P
from reactor import record as R
from reactor.chain import run_async, run_sync
from reactor.config import Config
from reactor.errors import ProtocolError, StorageUnavailableError
from reactor.link import Link, parse_address
from reactor.loader import load_jobs
from reactor.outcomes import OutcomeHandling, _args_or_empty
from reactor.record import JobRecord
from reactor.registry import JobEntry, JobRegistry
from reactor.storage import Storage, resolve_storage
from reactor.timers import TimerQueue
from reactor.watchdog import HeartbeatWatchdog

log = logging.getLogger("reactor.node")

_NAME_RE = re.compile(rf"[A-Za-z0-9_.:@-]{{1,{P.MAX_NAME_LEN}}}")

#: Seconds of ``def`` jobs run back to back before the loop serves I/O again.
RUN_SLICE = 0.005


class Node(OutcomeHandling):
    """A worker process's job runner, connected to one or more distributors.

    Args:
        name: the node's name (its routing id; jobs pinned with ``node=`` use it).
        distributors: ``"host:port"`` strings or ``(host, port)`` pairs to dial.
        storage: ``"memory_storage"``, ``"redis_storage"``, a ``redis://`` URL, or a Storage.
        job_directory: where the job files are (default: ``config["job_directory"]``).
        registry: a ready JobRegistry instead of loading files (tests, all-in-one programs).
        capacity: how many jobs the node takes at once (default: ``config["node_capacity"]``).
        config: settings; a snapshot is taken at start.
        curve: optional CURVE client settings (see ``reactor.security``).
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
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(
                f"invalid node name {name!r}: use 1-{P.MAX_NAME_LEN} letters, digits and _ - . : @"
            )
        self.name = name
        self.config = (config if config is not None else Config()).copy()
        self.capacity = int(capacity if capacity is not None else self.config["node_capacity"])
        self.session = secrets.token_hex(8)
        self.job_directory = Path(job_directory or self.config["job_directory"])
        self._storage_spec = storage
        self.registry = registry
        self.curve = curve
        self._links: dict[str, Link] = {}
        for address in distributors:
            host, port = parse_address(address)
            key = f"{host}:{port}"
            self._links[key] = Link(key, self._on_messages, self._hello, curve=curve)
        self.storage: Storage | None = None
        self.jobs: dict[str, JobRecord] = {}
        self.accepting = False
        self._ready: deque[JobRecord] = deque()
        self._waiting_slot: deque[JobRecord] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = 0
        self._run_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: TimerQueue[JobRecord] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._beat_handle: asyncio.TimerHandle | None = None
        self._watchdog: HeartbeatWatchdog | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._stopping = False
        self.stats = {"received": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "attempts": 0}

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the jobs, open storage, resume stored jobs, and dial every distributor."""
        loop = self._loop = asyncio.get_running_loop()
        if self.registry is None:
            self.registry = load_jobs(self.job_directory)
        self._timers = TimerQueue(loop, self._on_timers)
        self._executor = ThreadPoolExecutor(
            max_workers=int(self.config["defer_threads"]),
            thread_name_prefix=f"reactor-{self.name}-defer",
        )
        self.storage = resolve_storage(self._storage_spec, redis_url=self.config["redis_url"])
        await self.storage.start(self.name)
        if self.config["retry_jobs_at_start"]:
            await self._resume()
        self.accepting = True
        max_size = int(self.config["max_message_size"])
        for link in self._links.values():
            link.open(loop, self.name, max_size)
        self._beat_handle = loop.call_later(self._hb_interval, self._beat)
        self._watchdog = HeartbeatWatchdog(
            loop,
            self._hb_interval,
            lambda: [k.endpoint for k in self._links.values() if k.welcomed and k.endpoint],
            lambda: (self.session, self.accepting),
        )
        self._watchdog.start()
        log.info(
            "node %s started: %d jobs known, capacity %d, %s storage, distributors %s",
            self.name,
            len(self.registry),
            self.capacity,
            type(self.storage).__name__,
            ", ".join(self._links) or "none",
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking jobs, let running ones finish (up to ``grace`` s), deliver their feedback.

        Jobs received but not started go back to their distributor to run elsewhere.
        """
        if self._stopping:
            return
        self._stopping = True
        grace = float(self.config["shutdown_grace"] if grace is None else grace)
        self.accepting = False
        self._announce()
        self._hand_back()
        if self._tasks:
            log.info(
                "node %s: waiting up to %.1fs for %d running jobs",
                self.name,
                grace,
                len(self._tasks),
            )
            _, still = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in still:
                task.cancel()
        deadline = time.monotonic() + min(grace, 2.0)
        while any(link.feedback and link.welcomed for link in self._links.values()):
            if time.monotonic() > deadline:
                log.warning("node %s: stopping with feedback still unacknowledged", self.name)
                break
            await asyncio.sleep(0.01)
        await self.close()

    async def close(self) -> None:
        """Release everything at once, without waiting for running jobs."""
        if self._beat_handle is not None:
            self._beat_handle.cancel()
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._timers is not None:
            self._timers.close()
        for task in list(self._tasks):
            task.cancel()
        for link in self._links.values():
            link.close()
        if self.storage is not None:
            try:
                await self.storage.close()
            except Exception:
                log.exception("closing storage failed")
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for waiter in self._idle_waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def until_idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is ready or running (jobs on timers may remain)."""
        if self.idle:
            return
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._idle_waiters.append(waiter)
        await asyncio.wait_for(waiter, timeout)

    @property
    def idle(self) -> bool:
        """Whether no job is ready or running."""
        return not self._ready and not self._running and not self._waiting_slot

    @property
    def _hb_interval(self) -> float:
        return float(self.config["heartbeat_interval"])

    def _hello(self) -> P.Hello:
        names = self.registry.names() if self.registry is not None else []
        durable = bool(self.storage is not None and self.storage.durable)
        return P.Hello(
            P.PROTOCOL_VERSION,
            self.name,
            self.session,
            self.capacity,
            names,
            self.accepting,
            durable,
        )

    def _announce(self) -> None:
        beat = P.Heartbeat(self.session, self.accepting)
        for link in self._links.values():
            if link.welcomed:
                link.send(beat)

    def _beat(self) -> None:
        assert self._loop is not None
        self._beat_handle = self._loop.call_later(self._hb_interval, self._beat)
        if self._watchdog is not None:
            self._watchdog.loop_beat = time.monotonic()
        timeout = float(self.config["heartbeat_timeout"])
        for link in self._links.values():
            link.beat(self.session, self.accepting, timeout)

    # -- messages from distributors -------------------------------------------------------------

    def _on_messages(self, link: Link, messages: list[P.Message]) -> None:
        jobs: list[P.Job] = []
        for msg in messages:
            if isinstance(msg, P.Job):
                jobs.append(msg)
            elif isinstance(msg, P.FeedbackAck):
                link.acked(msg.items)
            elif isinstance(msg, P.Cancel):
                if jobs:
                    self._receive(link, jobs)
                    jobs = []
                for job_id in msg.ids:
                    self._cancel(job_id)
            elif isinstance(msg, P.Welcome):
                link.welcome(msg)
            elif isinstance(msg, P.Reset):
                log.info("distributor %s asks for a hello (%s)", link.key, msg.reason)
                link.welcomed = False
                link.say_hello()
            elif not isinstance(msg, P.Heartbeat):
                log.warning(
                    "distributor %s sent a %s, which only a node sends; dropped",
                    link.key,
                    type(msg).__name__,
                )
        if jobs:
            self._receive(link, jobs)

    def _receive(self, link: Link, messages: list[P.Job]) -> None:
        if not self.accepting:
            link.send(P.Heartbeat(self.session, False))
            link.send(
                P.Rejected(
                    [m.id for m in messages],
                    "the node is stopping"
                    if self._stopping
                    else "the node's storage is unavailable",
                )
            )
            return
        records: list[JobRecord] = []
        again: list[str] = []
        for m in messages:
            if m.id in self.jobs:
                again.append(m.id)  # a re-send of a job we hold: acknowledge it again
                continue
            records.append(
                JobRecord(
                    m.id,
                    m.name,
                    m.args,
                    run_at=m.run_at,
                    period=m.period,
                    make_after=m.make_after,
                    defer=m.defer,
                    distributor=link.key,
                    node=self.name,
                    enqueued_at=m.enqueued_at,
                )
            )
        if again:
            link.send(P.Stored(again))
        if not records:
            return
        self.stats["received"] += len(records)
        assert self.storage is not None
        if self.storage.add_nowait(records):
            self._stored(link, records)
        else:
            self._spawn(self._store(link, records))

    async def _store(self, link: Link, records: list[JobRecord]) -> None:
        assert self.storage is not None
        try:
            await self.storage.add(records)
        except StorageUnavailableError as exc:
            self._storage_down(link, records, exc)
            return
        self._stored(link, records)

    def _stored(self, link: Link, records: list[JobRecord]) -> None:
        link.send(P.Stored([r.id for r in records]))
        for record in records:
            self.jobs[record.id] = record
            self._schedule(record)

    def _storage_down(self, link: Link, records: list[JobRecord], exc: Exception) -> None:
        link.send(P.Rejected([r.id for r in records], f"storage unavailable: {exc}"))
        if not self.accepting:
            return
        log.error(
            "node %s: storage unavailable (%s); not taking jobs until it is back", self.name, exc
        )
        self.accepting = False
        self._announce()
        self._spawn(self._await_storage())

    async def _await_storage(self) -> None:
        assert self.storage is not None
        await self.storage.wait_available()
        if not self._stopping:
            log.info("node %s: storage is back; taking jobs again", self.name)
            self.accepting = True
            self._announce()

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("node task failed", exc_info=task.exception())

    # -- scheduling -----------------------------------------------------------------------------

    def _schedule(self, job: JobRecord) -> None:
        if job.run_at <= time.time():
            self._ready.append(job)
            self._kick()
        else:
            assert self._timers is not None
            job.timer = self._timers.add(job.run_at, job)

    def _kick(self) -> None:
        if not self._run_scheduled and self._loop is not None:
            self._run_scheduled = True
            self._loop.call_soon(self._run_ready)

    def _on_timers(self, jobs: list[JobRecord]) -> None:
        for job in jobs:
            job.timer = None
        assert self.storage is not None
        alive = self.storage.exists_nowait(jobs)
        if alive is not None:
            self._fire(jobs, alive)
        else:
            self._spawn(self._check_and_fire(jobs))

    async def _check_and_fire(self, jobs: list[JobRecord]) -> None:
        assert self.storage is not None
        try:
            alive = await self.storage.exists(jobs)
        except StorageUnavailableError:
            alive = [True] * len(jobs)  # cannot tell: run rather than lose a job
        self._fire(jobs, alive)

    def _fire(self, jobs: list[JobRecord], alive: list[bool]) -> None:
        for job, exists in zip(jobs, alive, strict=True):
            if not exists:
                log.info("job %s (%r) was deleted from storage: not running it", job.id, job.name)
                self.jobs.pop(job.id, None)
                self._send_feedback(job, P.CANCELLED, b"\x80", None)
                continue
            self._ready.append(job)
        self._kick()

    async def _resume(self) -> None:
        assert self.storage is not None
        stored = await self.storage.unfinished()
        if not stored:
            return
        max_attempt = int(self.config["max_attempt"])
        now = time.time()
        for job in stored:
            if job.id in self.jobs:
                continue
            self.jobs[job.id] = job
            if job.status == R.IN_PROGRESS:
                # The node died while this ran: that run counts as an attempt.
                job.last_error = "the node stopped while the job was running"
                job.failed_at = now
                if job.attempt >= max_attempt:
                    self._fail_final(job, _args_or_empty(job), ("NodeStopped", job.last_error, ""))
                    continue
                job.status = R.ERROR
                job.run_at = now
                self.storage.update(job)
            self._schedule(job)
        log.info("node %s resumed %d stored jobs", self.name, len(stored))

    # -- running --------------------------------------------------------------------------------

    def _run_ready(self) -> None:
        self._run_scheduled = False
        watchdog = self._watchdog
        if watchdog is None:
            self._run_slice()
            return
        # def chains touch no socket: let the watchdog beat for us while they block the loop.
        watchdog.lock.release()
        try:
            self._run_slice()
        finally:
            watchdog.lock.acquire()

    def _run_slice(self) -> None:
        ready = self._ready
        registry = self.registry
        assert registry is not None
        deadline = time.monotonic() + RUN_SLICE
        while ready:
            job = ready.popleft()
            if job.cancel_requested:
                self._finish_cancelled(job)
                continue
            entry = registry.get(job.name)
            if entry is None:
                self._no_such_job(job)
                continue
            if entry.is_async or job.defer:
                if self._running >= self.capacity:
                    self._waiting_slot.append(job)
                else:
                    self._start_async(job, entry)
                continue
            try:
                args = self._begin(job)
            except ProtocolError as exc:
                self._undecodable(job, exc)
                continue
            self._after(job, run_sync(entry, args, partial(self._attempt_args, job)))
            if time.monotonic() > deadline and ready:
                self._kick()
                return
        self._check_idle()

    def _check_idle(self) -> None:
        if self._idle_waiters and self.idle:
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()

    def _start_async(self, job: JobRecord, entry: JobEntry) -> None:
        self._running += 1
        self._spawn(self._run_async(job, entry))

    async def _run_async(self, job: JobRecord, entry: JobEntry) -> None:
        try:
            try:
                args = self._begin(job)
            except ProtocolError as exc:
                self._undecodable(job, exc)
                return
            attempt = await run_async(
                entry,
                args,
                lambda: self._attempt_args(job),
                executor=self._executor if job.defer else None,
            )
            self._after(job, attempt)
        finally:
            self._running -= 1
            if self._waiting_slot and not self._stopping:
                nxt = self._waiting_slot.popleft()
                self._ready.appendleft(nxt)
                self._kick()
            self._check_idle()

    def _begin(self, job: JobRecord) -> dict[str, Any]:
        job.status = R.IN_PROGRESS
        job.attempt += 1
        job.run_at = time.time()
        self.stats["attempts"] += 1
        assert self.storage is not None
        self.storage.update(job)
        if self.config["log_job_processing"]:
            log.info("job %s %r started (attempt %d)", job.id, job.name, job.attempt)
        return self._attempt_args(job)

    def _attempt_args(self, job: JobRecord) -> dict[str, Any]:
        args = P.unpack_args(job.args)
        if self.config["merge_job_itself_to_args"]:
            args["job_itself"] = self._job_itself(job, args)
        return args

    def _job_itself(self, job: JobRecord, args: dict[str, Any]) -> dict[str, Any]:
        return {
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
        }

    def _hand_back(self) -> None:
        """On shutdown: return jobs that have not started to their distributors."""
        back: dict[str, list[str]] = {}
        kept: deque[JobRecord] = deque()
        for job in (*self._ready, *self._waiting_slot):
            if job.attempt == 0 and job.period is None and job.run_at == 0.0:
                back.setdefault(job.distributor, []).append(job.id)
                self.jobs.pop(job.id, None)
                assert self.storage is not None
                self.storage.remove(job)
            else:
                kept.append(job)
        self._ready = kept
        self._waiting_slot.clear()
        for key, ids in back.items():
            link = self._links.get(key)
            if link is not None:
                link.send(P.Rejected(ids, "the node is stopping"))
        if back:
            log.info(
                "node %s: handed %d unstarted jobs back", self.name, sum(map(len, back.values()))
            )

    # -- introspection --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The node's live view as plain data."""
        return {
            "name": self.name,
            "accepting": self.accepting,
            "held": len(self.jobs),
            "ready": len(self._ready),
            "running": self._running,
            "timers": len(self._timers) if self._timers is not None else 0,
            "distributors": {key: link.welcomed for key, link in self._links.items()},
            "stats": dict(self.stats),
        }
