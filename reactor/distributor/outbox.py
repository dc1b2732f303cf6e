"""The durable outbox (``outbox=URL``, ``group=``): ``enqueue`` returns once the job is in Redis.

Jobs enqueued from any number of threads meanwhile share one write: the loop takes them all and
writes them in one pipeline, then hands them to the distributor and wakes their callers. A job's
entry is removed once a node has stored it (swept every heartbeat tick). Every distributor of a
group holds a lease, renewed on the heartbeat tick by a script that also takes over the outbox of
any member whose lease ran out (a SIGKILLed application), so a live member or a restarted one
delivers those jobs. Writes are fenced: once a member's outbox was taken over, its writes fail
until it has renewed its lease, so no entry is ever left in an outbox nobody will take over.

Keys (``{<group>}`` is a Redis Cluster hash tag: a group's keys share one slot)::

    {prefix}:outbox:{<group>}:leases          zset  session -> lease end (Redis server ms)
    {prefix}:outbox:{<group>}:box:<session>   hash  job id -> msgpack [wire, node, not_node,
                                                    due (wall clock, 0: now), deferred, periodic]

Leases are measured on the Redis server's clock (``TIME``), so application clocks never matter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgpack
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from reactor.core.jobstate import JobState
from reactor.errors import ReactorError, StorageUnavailableError
from reactor.storage.client import Client, make_client, safe_url
from reactor.wire.layout import JOB_DELAY, JOB_ID, JOB_NAME

log = logging.getLogger("reactor.outbox")

PREFIX = "reactor"
_FAILURES = (RedisError, RedisClusterException, OSError)
#: Jobs per script call (Lua's unpack has a limit on arguments).
CHUNK = 1000
#: A sweep that took t seconds runs again no sooner than this many times t later.
SWEEP_SHARE = 20
#: How long a caller of ``enqueue`` waits for its write before giving up.
WRITE_TIMEOUT = 30.0

#: KEYS leases, box; ARGV session, id1, entry1, ...: refused once the box was taken over.
_WRITE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return redis.error_reply('FENCED') end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
return 1
"""
_WRITE_SHA = hashlib.sha1(_WRITE.encode(), usedforsecurity=False).hexdigest()
#: KEYS leases, box; ARGV session, lease ms, box key prefix: renew, then take over up to 8
#: lapsed members' outboxes; returns their entries (id, entry, ...).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, 8)
local taken = {}
for _, s in ipairs(dead) do
  local box = ARGV[3] .. s
  local entries = redis.call('HGETALL', box)
  for i = 1, #entries, 2 do
    redis.call('HSET', KEYS[2], entries[i], entries[i + 1])
    taken[#taken + 1] = entries[i]
    taken[#taken + 1] = entries[i + 1]
  end
  redis.call('DEL', box)
  redis.call('ZREM', KEYS[1], s)
end
return taken
"""
#: KEYS leases, box; ARGV session: leave; an outbox with jobs is left for the others at once.
_RELEASE = """
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], 0, ARGV[1])
end
return 1
"""


def leases_key(group: str, prefix: str = PREFIX) -> str:
    """A group's leases."""
    return f"{prefix}:outbox:{{{group}}}:leases"


def box_key(group: str, session: str, prefix: str = PREFIX) -> str:
    """One distributor session's outbox."""
    return f"{prefix}:outbox:{{{group}}}:box:{session}"


def encode(job: JobState) -> bytes:
    """A job as its outbox entry (due instants become wall-clock ones, for another process)."""
    wire = job.message(time.monotonic())
    due = time.time() + wire[JOB_DELAY] if job.due else 0.0
    entry = [wire, job.node, job.not_node, due, job.deferred, job.periodic]
    return bytes(msgpack.packb(entry))


def decode(raw: bytes, handle: Callable[[str, str], Any]) -> JobState:
    """Rebuild a job from its entry; ``handle(job_id, name)`` makes its handle.

    Raises:
        ValueError: not an outbox entry.
    """
    try:
        wire, node, not_node, due, deferred, periodic = msgpack.unpackb(raw)
        job_id, name = str(wire[JOB_ID]), str(wire[JOB_NAME])
    except (ValueError, TypeError, IndexError, msgpack.UnpackException) as exc:
        raise ValueError(f"not an outbox entry: {exc}") from exc
    delay = max(0.0, due - time.time()) if due else 0.0
    return JobState.from_wire(
        wire,
        handle(job_id, name),
        node=node,
        not_node=not_node,
        due=time.monotonic() + delay if delay else 0.0,
        deferred=deferred,
        periodic=periodic,
    )


class _Batch:
    """Jobs waiting for one write, and the event their callers wait on."""

    __slots__ = ("done", "error", "jobs", "raw")

    def __init__(self) -> None:
        self.jobs: list[JobState] = []
        self.raw: list[bytes] = []
        self.done = threading.Event()
        self.error: BaseException | None = None


class Outbox:
    """A distributor's durable outbox (see the module docstring).

    Args:
        url: the Redis URL.
        group: the distributors' group; its members take over each other's outboxes.
        session: this distributor's session id.
        lease: seconds a member counts as alive without renewing.
        submit: hands written (or taken over) jobs to the distributor (on its loop).
        handle: makes the handle of a job taken over from another member.
    """

    def __init__(
        self,
        url: str,
        *,
        group: str,
        session: str,
        lease: float,
        submit: Callable[[list[JobState]], None],
        handle: Callable[[str, str], Any],
        prefix: str = PREFIX,
    ) -> None:
        if "{" in group or "}" in group:
            raise ReactorError(f"group {group!r} must not contain braces (Redis hash tag)")
        self.url = url
        self.group = group
        self.session = session
        self.lease_ms = max(1, int(lease * 1000))
        self._submit = submit
        self._handle = handle
        self._leases = leases_key(group, prefix)
        self._box = box_key(group, session, prefix)
        self._box_prefix = box_key(group, "", prefix)
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._lock = threading.Lock()
        self._batch = _Batch()
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewing = False
        self._stopped = False
        self._next_sweep = 0.0
        #: Written jobs not yet stored by a node, by id (their entries are swept once stored).
        self.unstored: dict[str, JobState] = {}
        #: Jobs written, taken over from other members, and entries removed.
        self.stats = {"written": 0, "taken_over": 0, "removed": 0}

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take jobs from now on (from ``loop``'s thread): the first write or tick joins the
        group if :meth:`start` has not."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._client = make_client(self.url)

    async def start(self) -> None:
        """Join the group now (and take over any lapsed member's outbox).

        Raises:
            StorageUnavailableError: Redis cannot be reached.
        """
        assert self._client is not None, "open() first"
        try:
            await self._client.script_load(_WRITE)
            await self._renew()
        except _FAILURES as exc:
            raise StorageUnavailableError(
                f"cannot reach the outbox at {safe_url(self.url)}: {exc}; start Redis or fix "
                "the outbox URL"
            ) from exc

    # -- enqueue (any thread) -----------------------------------------------------------------

    def put(self, job: JobState) -> None:
        """Write ``job`` to the outbox; from another thread than the loop's, return once written.

        Raises:
            StorageUnavailableError: the write failed (the job is not enqueued).
        """
        raw = encode(job)
        loop = self._loop
        if loop is None or self._stopped:
            raise ReactorError("the distributor's outbox is not open (not started, or stopping)")
        with self._lock:
            batch = self._batch
            batch.jobs.append(job)
            batch.raw.append(raw)
            schedule = not self._scheduled
            self._scheduled = True
        in_loop = threading.get_ident() == self._loop_thread
        if schedule:
            if in_loop:
                loop.call_soon(self._flush)
            else:
                loop.call_soon_threadsafe(self._flush)
        if in_loop:
            return  # the loop cannot wait for itself: the job is written in this iteration
        if not batch.done.wait(WRITE_TIMEOUT):
            raise StorageUnavailableError(
                f"the outbox at {safe_url(self.url)} did not confirm a write in {WRITE_TIMEOUT}s"
            )
        if batch.error is not None:
            raise batch.error

    def _flush(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, _Batch()
            self._scheduled = False
        if batch.jobs:
            self._spawn(self._write(batch))

    async def _write(self, batch: _Batch) -> None:
        try:
            if self._client is None:  # stopped meanwhile: these jobs are not in Redis
                raise RedisConnectionError("the outbox is closed")
            try:
                await self._write_entries(batch)
            except NoScriptError:  # Redis restarted (or failed over) since we loaded it
                assert self._client is not None
                await self._client.script_load(_WRITE)
                await self._write_entries(batch)
            except ResponseError as exc:
                if "FENCED" not in str(exc):
                    raise
                log.warning(
                    "outbox of distributor session %s was taken over by another member of "
                    "group %r (its lease lapsed); rejoining",
                    self.session,
                    self.group,
                )
                await self._renew()
                await self._write_entries(batch)
        except _FAILURES as exc:
            batch.error = StorageUnavailableError(
                f"cannot write {len(batch.jobs)} jobs to the outbox at {safe_url(self.url)}: "
                f"{exc}; the jobs were not enqueued"
            )
            log.error("%s", batch.error)
            for job in batch.jobs:  # a caller on the loop already holds its handle: settle it
                job.handle.resolve(None, batch.error)
        else:
            batch.done.set()  # wake the callers first: what follows is the loop's own work
            self.stats["written"] += len(batch.jobs)
            for job in batch.jobs:
                self.unstored[job.id] = job
            self._submit(batch.jobs)
        finally:
            batch.done.set()

    async def _write_entries(self, batch: _Batch) -> None:
        client = self._client
        assert client is not None
        calls: list[list[str | bytes]] = []
        for i in range(0, len(batch.jobs), CHUNK):
            args: list[str | bytes] = [self.session]
            for job, raw in zip(batch.jobs[i : i + CHUNK], batch.raw[i : i + CHUNK], strict=True):
                args += (job.id, raw)
            calls.append(args)
        if len(calls) == 1:  # the usual batch: one command, without a pipeline's overhead
            await client.evalsha(_WRITE_SHA, 2, self._leases, self._box, *calls[0])
            return
        pipe = client.pipeline(transaction=False)
        for args in calls:
            pipe.evalsha(_WRITE_SHA, 2, self._leases, self._box, *args)
        await pipe.execute()

    # -- the heartbeat tick ---------------------------------------------------------------------

    def tick(self, stored: Callable[[JobState], bool]) -> None:
        """Renew the lease (taking over lapsed members) and remove the entries of jobs that
        ``stored(job)`` says a node has stored (or that ended)."""
        now = time.monotonic()
        if now >= self._next_sweep:  # a sweep walks every unstored job: at most 5% of the loop
            done = [job_id for job_id, job in self.unstored.items() if stored(job)]
            for job_id in done:
                del self.unstored[job_id]
            if done:
                self._spawn(self._remove(done))
            self._next_sweep = now + SWEEP_SHARE * (time.monotonic() - now)
        if not self._renewing:
            self._renewing = True
            self._spawn(self._renew_quietly())

    async def _remove(self, ids: list[str]) -> None:
        assert self._client is not None
        try:
            pipe = self._client.pipeline(transaction=False)
            for i in range(0, len(ids), CHUNK):
                pipe.hdel(self._box, *ids[i : i + CHUNK])
            await pipe.execute()
            self.stats["removed"] += len(ids)
        except _FAILURES as exc:  # they are delivered again after a crash: at least once
            log.warning("could not remove %d delivered jobs from the outbox: %s", len(ids), exc)

    async def _renew_quietly(self) -> None:
        try:
            await self._renew()
        except _FAILURES as exc:
            log.warning(
                "cannot renew the outbox lease of group %r at %s: %s",
                self.group,
                safe_url(self.url),
                exc,
            )
        finally:
            self._renewing = False

    async def _renew(self) -> None:
        assert self._client is not None
        taken: list[bytes] = await self._client.eval(
            _RENEW, 2, self._leases, self._box, self.session, self.lease_ms, self._box_prefix
        )
        if not taken:
            return
        jobs: list[JobState] = []
        for i in range(0, len(taken), 2):
            try:
                job = decode(taken[i + 1], self._handle)
            except ValueError as exc:
                log.error("dropping a malformed outbox entry %r: %s", taken[i], exc)
                continue
            jobs.append(job)
            self.unstored[job.id] = job
        self.stats["taken_over"] += len(jobs)
        log.warning(
            "group %r: took over %d jobs from the outbox of a member whose lease lapsed",
            self.group,
            len(jobs),
        )
        self._submit(jobs)

    # -- stop -----------------------------------------------------------------------------------

    async def stop(self, stored: Callable[[JobState], bool]) -> None:
        """Remove the entries of stored jobs, then leave the group: an outbox with jobs left is
        taken over by another member (or a restarted one) at its next tick."""
        self._stopped = True
        self._flush()  # what was enqueued a moment ago is written before the group is left
        for task in list(self._tasks):
            if not task.done():
                await asyncio.wait({task}, timeout=5.0)
        client = self._client
        if client is None:
            return
        done = [job_id for job_id, job in self.unstored.items() if stored(job)]
        try:
            if done:
                await self._remove(done)
            await client.eval(_RELEASE, 2, self._leases, self._box, self.session)
        except _FAILURES as exc:
            log.warning("could not leave outbox group %r cleanly: %s", self.group, exc)
        finally:
            self._client = None
            await client.aclose()

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
