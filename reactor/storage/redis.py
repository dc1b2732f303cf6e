"""Redis storage: one hash per job, a per-node index set, and batched write-behind pipelines.

Key layout (``prefix`` defaults to ``reactor``; the braces around the node name are literal)::

    {prefix}:{<node>}:job:<id>   hash  one job's fields
    {prefix}:{<node>}:jobs       set   ids of <node>'s stored jobs (listing never uses KEYS)
    {prefix}:job-node            hash  job id -> node name, so a job is found by its id alone
    {prefix}:nodes               set   names of nodes that have stored jobs

``{<node>}`` is a Redis Cluster hash tag: one node's job hashes and index share a slot, and
every multi-key command or script names only those. ``job-node`` and ``nodes`` are not in the
node's slot; they are written by separate commands. Keys hold the exact node name, so ``node``
never matches ``node_2``. Hash fields are ``JobRecord.FIELDS``: ``args`` is the raw msgpack
bytes, floats are ``repr(float)`` (fractions kept), ints decimal, bools ``"1"``/``"0"``, strings
as is, and None is an absent field. An update only touches a hash that still exists, so a
record deleted by the monitor (a cancellation) is never brought back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from reactor.errors import ConfigError, StorageUnavailableError
from reactor.record import UNFINISHED, JobRecord
from reactor.storage.base import Storage
from reactor.storage.redis_layout import (
    _ADD,
    _ADD_SHA,
    _CHUNK,
    _DOWN_ERRORS,
    _REMOVE,
    _SCRIPTS,
    _UPDATE,
    _UPDATE_SHA,
    _describe,
    _pack,
    decode_record,
    encode_record,
    index_key,
    job_key,
    job_node_key,
    nodes_key,
    safe_url,
)

log = logging.getLogger("reactor.storage")


@dataclass(slots=True)
class _Ack:
    """One ``add`` call waiting until the pipeline carrying its jobs has been written."""

    future: asyncio.Future[None]
    remaining: int


@dataclass(slots=True)
class _Op:
    """The latest pending write for one job id (coalesced).

    The record is encoded only when the pipeline is built, from its state at that moment: most
    updates are superseded by a later one (or a removal) within the same batch, and the latest
    state is what every coalesced write stands for anyway.
    """

    kind: int
    job: JobRecord | None
    version: int
    acks: list[_Ack]

    def then(self, later: _Op) -> _Op:
        """This write followed by ``later``, as one write."""
        acks = self.acks + later.acks
        if later.kind == _UPDATE:
            if self.kind == _REMOVE:  # an update never brings back a removed record
                return _Op(_REMOVE, None, later.version, acks)
            return _Op(self.kind, later.job, later.version, acks)
        return _Op(later.kind, later.job, later.version, acks)


class _BatchFailedError(Exception):
    """A pipeline could not be written; ``down`` when Redis is unreachable."""

    def __init__(self, cause: BaseException, *, down: bool) -> None:
        super().__init__(_describe(cause))
        self.cause, self.down = cause, down


class RedisStorage(Storage):
    """Jobs in Redis, written in one pipeline per event-loop iteration (see module docstring).

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://...`` or ``unix://...``.
        prefix: first part of every key, to share one Redis between several setups.
        retry_base: first reconnect delay in seconds; doubles up to ``retry_cap``.
        retry_cap: longest delay between reconnect attempts.
        close_timeout: how long :meth:`close` waits for pending writes.
    """

    durable = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "reactor",
        retry_base: float = 0.25,
        retry_cap: float = 5.0,
        close_timeout: float = 5.0,
    ) -> None:
        try:
            parse_url(url)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {safe_url(url)!r}: {exc}") from exc
        self.url = url
        self.prefix = prefix
        self._shown_url = safe_url(url)
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._close_timeout = close_timeout
        self._node = ""
        self._index = ""
        self._redis: aioredis.Redis | None = None
        self._pending: dict[str, _Op] = {}
        self._inflight: dict[str, _Op] = {}
        self._reads: list[tuple[list[str], asyncio.Future[list[bool]]]] = []
        self._version = 0
        self._up: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        #: Pipelines written so far (for tests and benchmarks).
        self.batches = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, node_name: str) -> None:
        """Connect, retrying with capped exponential backoff until Redis answers."""
        if "{" in node_name or "}" in node_name:
            raise ConfigError(f"node name {node_name!r} must not contain braces (Redis hash tag)")
        self._node = node_name
        self._index = index_key(self.prefix, node_name)
        # One immediate retry re-dials a pooled connection a restarted Redis closed; longer
        # outages are handled here, with backoff, not inside redis-py.
        self._redis = aioredis.Redis.from_url(
            self.url, retry=Retry(NoBackoff(), 1), socket_connect_timeout=5.0, socket_timeout=10.0
        )
        self._up, self._wake, self._progress = asyncio.Event(), asyncio.Event(), asyncio.Condition()
        await self._connect(first=True)
        self._writer_task = asyncio.create_task(self._write_loop(), name="reactor-redis-writer")
        if self._pending:
            self._wake.set()

    async def close(self) -> None:
        """Write what is pending (waiting at most ``close_timeout``), then close the pool."""
        if self._redis is None:
            return
        if self.available and (self._pending or self._inflight):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), self._close_timeout)
        lost = len(self._pending) + len(self._inflight)
        if lost:
            log.warning("closing Redis storage with %d unwritten job updates", lost)
        for task in (self._writer_task, self._reconnect_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer_task = self._reconnect_task = None
        error = StorageUnavailableError("Redis storage closed")
        self._fail_waiters(list(self._pending.values()) + list(self._inflight.values()), error)
        await self._redis.aclose()
        self._redis = self._up = self._wake = self._progress = None

    @property
    def available(self) -> bool:
        """False while Redis is known unreachable (and before :meth:`start`)."""
        return self._up is not None and self._up.is_set()

    async def wait_available(self) -> None:
        """Return once Redis answers again."""
        if self._up is None:
            raise RuntimeError("RedisStorage.start() was not called")
        await self._up.wait()

    async def _connect(self, *, first: bool) -> None:
        """PING until Redis answers, backing off; then mark it available."""
        assert self._redis is not None and self._up is not None and self._wake is not None
        delay, attempts = self._retry_base, 0
        while True:
            try:
                await self._redis.ping()
                for body in _SCRIPTS.values():  # a restarted Redis has forgotten them
                    await self._redis.script_load(body)
                break
            except (RedisError, OSError) as exc:
                attempts += 1
                log.warning(
                    "cannot reach Redis at %s (%s): retrying in %.1fs",
                    self._shown_url,
                    _describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_cap)
        if not first or attempts:
            log.info("Redis at %s is reachable again", self._shown_url)
        self._up.set()
        self._wake.set()

    def _mark_down(self, exc: BaseException) -> None:
        """Note that Redis is unreachable and start the reconnect loop."""
        assert self._up is not None
        if self._up.is_set():
            self._up.clear()
            pending = len(self._pending) + len(self._inflight)
            log.error(
                "lost Redis at %s (%s); keeping %d job writes until it is back",
                self._shown_url,
                _describe(exc),
                pending,
            )
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.create_task(
                self._connect(first=False), name="reactor-redis-reconnect"
            )

    def _unavailable(self, cause: BaseException | None = None) -> StorageUnavailableError:
        detail = f" ({_describe(cause)})" if cause is not None else ""
        return StorageUnavailableError(f"Redis at {self._shown_url} is unreachable{detail}")

    # -- writes -----------------------------------------------------------------------------

    async def add(self, jobs: Sequence[JobRecord]) -> None:
        """Persist new jobs; returns once the pipeline carrying them has been written.

        Raises:
            StorageUnavailableError: Redis is unreachable; none of ``jobs`` is kept.
        """
        if not jobs:
            return
        if not self.available:
            raise self._unavailable()
        ack = _Ack(asyncio.get_running_loop().create_future(), len(jobs))
        for job in jobs:
            self._queue(job.id, _ADD, job, [ack])
        await ack.future

    def update(self, job: JobRecord) -> None:
        """Queue the job's current state; a record deleted meanwhile stays deleted."""
        self._queue(job.id, _UPDATE, job, [])

    def remove(self, job: JobRecord) -> None:
        """Queue the deletion of the job's record."""
        self._queue(job.id, _REMOVE, None, [])

    async def flush(self) -> None:
        """Wait until every write queued so far is in Redis (across outages)."""
        if self._progress is None or self._writer_task is None:
            return
        target = self._version
        async with self._progress:
            await self._progress.wait_for(lambda: self._oldest() > target)

    def _queue(self, job_id: str, kind: int, job: JobRecord | None, acks: list[_Ack]) -> None:
        self._version += 1
        op = _Op(kind, job, self._version, acks)
        earlier = self._pending.pop(job_id, None)
        self._pending[job_id] = op if earlier is None else earlier.then(op)
        if self._wake is not None:
            self._wake.set()

    def _oldest(self) -> float:
        versions = [op.version for op in self._pending.values()]
        versions += [op.version for op in self._inflight.values()]
        return min(versions, default=float("inf"))

    async def _write_loop(self) -> None:
        assert self._wake is not None and self._up is not None and self._progress is not None
        delay = self._retry_base
        while True:
            if not (self._pending or self._reads):
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(0)  # let the rest of this loop iteration queue its writes
            if not self._up.is_set():
                self._fail_reads(self._reads, self._unavailable())
                self._reads = []
                self._fail_waiters(list(self._pending.values()), self._unavailable())
                await self._up.wait()
                continue
            ops, reads = self._pending, self._reads
            self._pending, self._reads, self._inflight = {}, [], ops
            try:
                found = await self._write(ops, reads)
            except _BatchFailedError as exc:
                self._inflight = {}
                for job_id, op in ops.items():
                    later = self._pending.pop(job_id, None)
                    self._pending[job_id] = op if later is None else op.then(later)
                error = (
                    self._unavailable(exc.cause)
                    if exc.down
                    else StorageUnavailableError(
                        f"Redis at {self._shown_url} refused a write ({exc})"
                    )
                )
                self._fail_reads(reads, error)
                self._fail_waiters(list(self._pending.values()), error)
                if exc.down:
                    self._mark_down(exc.cause)
                else:
                    log.warning("Redis refused a write (%s): retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_cap)
            else:
                self._inflight = {}
                self.batches += 1
                delay = self._retry_base
                for op in ops.values():
                    for ack in op.acks:
                        ack.remaining -= 1
                        if ack.remaining == 0 and not ack.future.done():
                            ack.future.set_result(None)
                for (_keys, future), answer in zip(reads, found, strict=True):
                    if not future.done():
                        future.set_result(answer)
            async with self._progress:
                self._progress.notify_all()

    async def _write(
        self, ops: dict[str, _Op], reads: list[tuple[list[str], asyncio.Future[list[bool]]]]
    ) -> list[list[bool]]:
        """One pipeline: the writes in ``ops``, then the EXISTS checks in ``reads``."""
        assert self._redis is not None
        for attempt in (1, 2):
            pipe = self._redis.pipeline(transaction=False)
            self._queue_writes(pipe, ops)
            n_writes = len(pipe)
            for keys, _future in reads:
                for key in keys:
                    pipe.exists(key)
            try:
                results = await pipe.execute(raise_on_error=False)
            except _DOWN_ERRORS as exc:
                raise _BatchFailedError(exc, down=True) from exc
            except Exception as exc:  # a refused or unexpected failure: retried with backoff
                raise _BatchFailedError(exc, down=False) from exc
            errors = [r for r in results if isinstance(r, Exception)]
            if any(isinstance(e, NoScriptError) for e in errors) and attempt == 1:
                await self._load_scripts()  # a restarted Redis forgot it; the batch is idempotent
                continue
            if errors:
                raise _BatchFailedError(errors[0], down=isinstance(errors[0], _DOWN_ERRORS))
            answers = iter(bool(r) for r in results[n_writes:])
            return [[next(answers) for _ in keys] for keys, _future in reads]
        raise AssertionError("unreachable")  # pragma: no cover

    def _queue_writes(self, pipe: aioredis.client.Pipeline, ops: dict[str, _Op]) -> None:
        """Put ``ops`` in ``pipe``: a few commands per thousand jobs, whatever the mix."""
        prefix, node = self.prefix, self._node
        added = [(job_id, op) for job_id, op in ops.items() if op.kind == _ADD]
        updated = [(job_id, op) for job_id, op in ops.items() if op.kind == _UPDATE]
        removed = [job_id for job_id, op in ops.items() if op.kind == _REMOVE]
        for i in range(0, len(added), _CHUNK):
            chunk = added[i : i + _CHUNK]
            rows = _pack([encode_record(op.job)[0] for _id, op in chunk if op.job is not None])
            pipe.evalsha(_ADD_SHA, len(chunk), *(job_key(prefix, node, j) for j, _ in chunk), rows)
        for i in range(0, len(updated), _CHUNK):
            chunk = updated[i : i + _CHUNK]
            rows = _pack([encode_record(op.job) for _id, op in chunk if op.job is not None])
            keys = (job_key(prefix, node, job_id) for job_id, _op in chunk)
            pipe.evalsha(_UPDATE_SHA, len(chunk), *keys, rows)
        if added:
            pipe.sadd(self._index, *(job_id for job_id, _op in added))
            pairs = (item for job_id, _op in added for item in (job_id, node))
            pipe.execute_command("HSET", job_node_key(prefix), *pairs)
            pipe.sadd(nodes_key(prefix), node)
        if removed:
            pipe.delete(*(job_key(prefix, node, job_id) for job_id in removed))
            pipe.srem(self._index, *removed)
            pipe.hdel(job_node_key(prefix), *removed)

    async def _load_scripts(self) -> None:
        assert self._redis is not None
        try:
            for body in _SCRIPTS.values():
                await self._redis.script_load(body)
        except _DOWN_ERRORS as exc:
            raise _BatchFailedError(exc, down=True) from exc
        except RedisError as exc:
            raise _BatchFailedError(exc, down=False) from exc

    def _fail_waiters(self, ops: Iterable[_Op], error: StorageUnavailableError) -> None:
        """Fail the ``add`` calls waiting on ``ops``; their jobs are then forgotten again."""
        for op in ops:
            if not op.acks:
                continue
            for ack in op.acks:
                if not ack.future.done():
                    ack.future.set_exception(error)
            op.acks = []
            if op.kind == _ADD:  # not acknowledged: do not resume it after a restart
                op.kind, op.job = _REMOVE, None

    @staticmethod
    def _fail_reads(
        reads: list[tuple[list[str], asyncio.Future[list[bool]]]], error: StorageUnavailableError
    ) -> None:
        for _keys, future in reads:
            if not future.done():
                future.set_exception(error)

    # -- reads ------------------------------------------------------------------------------

    async def exists(self, jobs: Sequence[JobRecord]) -> list[bool]:
        """Whether each record is still stored; checked after the writes queued before it.

        Raises:
            StorageUnavailableError: Redis is unreachable.
        """
        if not jobs:
            return []
        if not self.available or self._wake is None:
            raise self._unavailable()
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._reads.append(([job_key(self.prefix, self._node, job.id) for job in jobs], future))
        self._wake.set()
        return await future

    async def unfinished(self) -> list[JobRecord]:
        """This node's stored jobs whose status is new, in progress, queued or error.

        Raises:
            StorageUnavailableError: Redis is unreachable.
        """
        if self._redis is None:
            raise RuntimeError("RedisStorage.start() was not called")
        found: list[JobRecord] = []
        seen: set[bytes] = set()
        chunk: list[bytes] = []
        try:
            async for member in self._redis.sscan_iter(self._index, count=_CHUNK):
                if member not in seen:
                    seen.add(member)
                    chunk.append(member)
                if len(chunk) >= _CHUNK:
                    found += await self._load_unfinished(chunk)
                    chunk = []
            if chunk:
                found += await self._load_unfinished(chunk)
        except _DOWN_ERRORS as exc:
            self._mark_down(exc)
            raise self._unavailable(exc) from exc
        found.sort(key=lambda job: job.run_at)
        return found

    async def _load_unfinished(self, ids: list[bytes]) -> list[JobRecord]:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(job_key(self.prefix, self._node, job_id.decode()))
        records = (decode_record(raw) for raw in await pipe.execute())
        return [job for job in records if job is not None and job.status in UNFINISHED]
