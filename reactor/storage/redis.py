"""Redis storage: one hash per job, a per-node index set, and batched write-behind pipelines.

Key layout (``prefix`` defaults to ``reactor``; the braces around the node name are literal)::

    {prefix}:{<node>}:job:<id>   hash  one job's fields
    {prefix}:{<node>}:jobs       set   ids of <node>'s stored jobs (listing never uses KEYS)
    {prefix}:job-node            hash  job id -> node name, so a job is found by its id alone
    {prefix}:nodes               set   names of nodes that have stored jobs
    {prefix}:{<node>}:probe      string written and deleted to learn whether Redis takes writes
    {prefix}:{<node>}:destroyed:<id>    string  tombstone a destroy leaves (7 days TTL), so a
                                          timer tells a deliberate destroy from a lost record
    {prefix}:{<node>}:quarantine        hash    job id -> why its record was moved aside
    {prefix}:{<node>}:quarantined:<id>  any     a corrupt record's raw key, renamed (never read
                                          back by the node; inspect it, then delete it)

``{<node>}`` is a Redis Cluster hash tag: one node's job hashes and index share a slot, and
every multi-key command or script names only those. ``job-node`` and ``nodes`` are not in the
node's slot; they are written by separate commands. Keys hold the exact node name, so ``node``
never matches ``node_2``. Hash fields are ``JobRecord.FIELDS``: ``args`` is the raw msgpack
bytes, floats are ``repr(float)`` (fractions kept), ints decimal, bools ``"1"``/``"0"``, strings
as is, and None is an absent field. An update only touches a hash that still exists, so a
record deleted by the monitor (a cancellation) is never brought back.

Failures, write-ahead and eviction: see :mod:`reactor.storage.redis_errors`. Kept records are
pruned through ``{prefix}:{<node>}:kept:<status>`` (see :mod:`reactor.storage.redis_resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from reactor.errors import ConfigError, StorageAuthError, StorageUnavailableError
from reactor.jobs.record import IS_FINISHED, JobRecord
from reactor.storage.base import Pruned, Storage
from reactor.storage.redis_batch import (
    Ack,
    BatchFailedError,
    Client,
    Op,
    Reads,
    fail_reads,
    fail_waiters,
    write_batch,
)
from reactor.storage.redis_errors import AUTH, POISON, classify
from reactor.storage.redis_errors import describe as _describe
from reactor.storage.redis_health import Availability, check_eviction, probe_writes
from reactor.storage.redis_layout import (
    OP_ADD,
    OP_BEGIN,
    OP_REMOVE,
    OP_UPDATE,
    cluster_url,
    encode_record,
    index_key,
    job_key,
    safe_url,
    tombstone_key,
)
from reactor.storage.redis_resume import load_unfinished, prune_kept, quarantine
from reactor.storage.redis_retry import take_retried

log = logging.getLogger("reactor.storage")


class RedisStorage(Storage):
    """Jobs in Redis, written in one pipeline per event-loop iteration (see module docstring).

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://...``, ``unix://...``, or
            ``redis+cluster://[:password@]host:port`` (any node of a Redis Cluster).
        prefix: first part of every key, to share one Redis between several setups.
        retry_base: base of the jittered exponential delay between reconnect probes.
        retry_cap: longest delay between reconnect probes.
        close_timeout: how long :meth:`close` waits for pending writes.
        stable_probes: after an outage, consecutive successful write probes needed before the
            storage is declared available again (hysteresis: no flapping).
        stable_interval: seconds between those probes.
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
        stable_probes: int = 2,
        stable_interval: float = 0.5,
    ) -> None:
        self._client_url, self.cluster = cluster_url(url)
        try:
            parse_url(self._client_url)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {safe_url(url)!r}: {exc}") from exc
        self.url = url
        self.prefix = prefix
        self._shown_url = safe_url(url)
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._close_timeout = close_timeout
        self._stable = (stable_probes, stable_interval)
        self._mode_checked = False
        self._node = ""
        self._index = ""
        self._redis: Client | None = None
        self._health: Availability | None = None
        self._pending: dict[str, Op] = {}
        self._inflight: dict[str, Op] = {}
        self._reads: Reads = []
        self._version = 0
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._writer_task: asyncio.Task[None] | None = None
        #: Pipelines written so far (for tests and benchmarks).
        self.batches = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, node_name: str) -> None:
        """Connect, retrying with jittered exponential backoff until Redis takes writes.

        Cancelling the call (a SIGTERM during start) stops the retries at once and releases
        the connections.

        Raises:
            ConfigError: the node name contains a brace (it is a Redis Cluster hash tag).
            StorageAuthError: Redis refused the credentials, or the ACL user lacks a needed
                permission; raised at once, without retrying.
        """
        if "{" in node_name or "}" in node_name:
            raise ConfigError(f"node name {node_name!r} must not contain braces (Redis hash tag)")
        self._node = node_name
        self._index = index_key(self.prefix, node_name)
        # One immediate retry re-dials a pooled connection a restarted Redis closed; longer
        # outages are handled by Availability, with backoff, not inside redis-py.
        if self.cluster:
            self._redis = self._cluster_client()
        else:
            self._redis = aioredis.Redis.from_url(
                self._client_url,
                retry=Retry(NoBackoff(), 1),
                socket_connect_timeout=5.0,
                socket_timeout=10.0,
            )
        self._wake, self._progress = asyncio.Event(), asyncio.Condition()
        stable_probes, stable_interval = self._stable
        self._health = Availability(
            shown_url=self._shown_url,
            probe=self._probe,
            retry_base=self._retry_base,
            retry_cap=self._retry_cap,
            stable_probes=stable_probes,
            stable_interval=stable_interval,
        )
        try:
            await self._health.connect()
            await check_eviction(self._redis, self._shown_url)
        except BaseException as exc:  # cancelled, or refused: leave nothing open behind
            await self._release()
            if isinstance(exc, RedisError) and classify(exc, starting=True) == AUTH:
                raise StorageAuthError(
                    f"Redis at {self._shown_url} refused authentication or permission "
                    f"({_describe(exc)}): check the user and password in the Redis URL and "
                    "the user's ACL"
                ) from None
            raise
        self._writer_task = asyncio.create_task(self._write_loop(), name="reactor-redis-writer")
        if self._pending:
            self._wake.set()

    def _cluster_client(self) -> RedisCluster:
        """A client that follows MOVED/ASK itself and splits pipelines by node."""
        return RedisCluster.from_url(
            self._client_url, socket_connect_timeout=5.0, socket_timeout=10.0
        )

    async def _detect_cluster(self) -> None:
        """Switch to the Cluster client when a ``redis://`` URL names a Redis Cluster node."""
        if self.cluster or self._mode_checked or not isinstance(self._redis, aioredis.Redis):
            return
        try:
            info = await self._redis.info("cluster")
        except ResponseError:  # an ACL without INFO: assume a single Redis, as the URL says
            info = {}
        self._mode_checked = True
        if int(info.get("cluster_enabled", 0)):
            log.info("Redis at %s is a Redis Cluster node: using a Cluster client", self._shown_url)
            plain, self._redis, self.cluster = self._redis, self._cluster_client(), True
            await plain.aclose()

    async def _release(self) -> None:
        if self._health is not None:
            await self._health.close()
        if self._redis is not None:
            await self._redis.aclose()
        self._redis = self._health = self._wake = self._progress = None

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
        if self._writer_task is not None:
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
        self._writer_task = None
        error = StorageUnavailableError("Redis storage closed")
        fail_waiters(
            list(self._pending.values()) + list(self._inflight.values()), error, closing=True
        )
        await self._release()

    @property
    def available(self) -> bool:
        """False while Redis is known unavailable (and before :meth:`start`)."""
        return self._health is not None and self._health.up

    @property
    def outages(self) -> int:
        """How many times the storage went from available to unavailable."""
        return 0 if self._health is None else self._health.outages

    async def wait_available(self) -> None:
        """Return once Redis has taken writes again for a stable period."""
        if self._health is None:
            raise RuntimeError("RedisStorage.start() was not called")
        await self._health.wait()

    async def _probe(self) -> None:
        """One write round trip, which also reloads the scripts a restarted Redis forgot.

        Raises:
            RedisError: Redis refused (READONLY, OOM, NOPERM, ...), or one of the shared index
                keys holds the wrong type (no batch could be written: a human must fix it).
        """
        assert self._redis is not None
        try:
            await self._detect_cluster()
        except (OSError, RedisClusterException) as exc:
            raise RedisConnectionError(_describe(exc)) from exc
        await probe_writes(self._redis, self.prefix, self._node)

    def _mark_down(self, exc: BaseException) -> None:
        assert self._health is not None
        self._health.mark_down(exc, len(self._pending) + len(self._inflight))

    def _unavailable(self, cause: BaseException | None = None) -> StorageUnavailableError:
        detail = f" ({_describe(cause)})" if cause is not None else ""
        return StorageUnavailableError(f"Redis at {self._shown_url} is unavailable{detail}")

    # -- writes -----------------------------------------------------------------------------

    async def add(self, jobs: Sequence[JobRecord]) -> None:
        """Persist new jobs; returns once the pipeline carrying them has been written.

        Raises:
            StorageUnavailableError: Redis is unavailable; none of ``jobs`` is kept.
            PoisonedRecordsError: the jobs it names could not be written (their keys hold
                foreign data); every other job of the call is stored.
        """
        if not jobs:
            return
        if not self.available:
            raise self._unavailable()
        ack = Ack(asyncio.get_running_loop().create_future(), len(jobs), {})
        for job in jobs:
            self._queue(job.id, OP_ADD, job, [ack])
        await ack.future

    def write_ahead(self, jobs: Sequence[JobRecord]) -> asyncio.Future[None] | None:
        """Write the jobs' current state with the next pipeline; the future is done once it is
        written (see :meth:`Storage.write_ahead`). One future per batch of jobs, not per job."""
        if not jobs:
            return None
        ack = Ack(asyncio.get_running_loop().create_future(), len(jobs), {}, ahead=True)
        pending = self._pending
        for job in jobs:
            op = pending.get(job.id)
            if op is not None and op.job is job:  # a whole-record write is queued already
                op.acks.append(ack)  # the record is encoded when the pipeline is built
            else:
                self._queue(job.id, OP_BEGIN, job, [ack])
        return ack.future

    def update(self, job: JobRecord) -> None:
        """Queue the job's current state; a record deleted meanwhile stays deleted."""
        self._queue(job.id, OP_UPDATE, job, [])
        if self.on_kept is not None and job.status in IS_FINISHED:
            self.on_kept(job.status)

    def remove(self, job: JobRecord) -> None:
        """Queue the deletion of the job's record."""
        self._queue(job.id, OP_REMOVE, None, [])

    async def flush(self) -> None:
        """Wait until every write queued so far is in Redis (across outages)."""
        if self._progress is None or self._writer_task is None:
            return
        target = self._version
        async with self._progress:
            await self._progress.wait_for(lambda: self._oldest() > target)

    def _queue(self, job_id: str, kind: int, job: JobRecord | None, acks: list[Ack]) -> None:
        self._version += 1
        op = Op(kind, job, self._version, acks)
        earlier = self._pending.pop(job_id, None)
        self._pending[job_id] = op if earlier is None else earlier.then(op)
        if self._wake is not None:
            self._wake.set()

    def _oldest(self) -> float:
        versions = [op.version for op in self._pending.values()]
        versions += [op.version for op in self._inflight.values()]
        return min(versions, default=float("inf"))

    async def _write_loop(self) -> None:
        assert self._wake is not None and self._health is not None and self._progress is not None
        while True:
            if not (self._pending or self._reads):
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(0)  # let the rest of this loop iteration queue its writes
            if not self._health.up:
                fail_reads(self._reads, self._unavailable())
                self._reads = []
                fail_waiters(list(self._pending.values()), self._unavailable())
                await self._health.wait()
                continue
            ops, reads = self._pending, self._reads
            self._pending, self._reads, self._inflight = {}, [], ops
            began = time.monotonic()
            assert self._redis is not None
            try:
                found, poisoned = await write_batch(
                    self._redis, self.prefix, self._node, ops, reads, rows=self._rows
                )
            except BatchFailedError as exc:
                self._inflight = {}
                ops.update(exc.poisoned)  # not reported yet: found again on the next try
                for job_id, op in ops.items():
                    later = self._pending.pop(job_id, None)
                    self._pending[job_id] = op if later is None else op.then(later)
                error = self._unavailable(exc.cause)
                fail_reads(reads, error)
                fail_waiters(list(self._pending.values()), error)
                self._mark_down(exc.cause)
            else:
                self._inflight = {}
                self.batches += 1
                if self.on_written is not None:
                    self.on_written(time.monotonic() - began)
                for op in ops.values():
                    for ack in op.acks:
                        ack.settle()
                for (_keys, future), answer in zip(reads, found, strict=True):
                    if not future.done():
                        future.set_result(answer)
                await self._report_poisoned(poisoned)
            async with self._progress:
                self._progress.notify_all()

    async def _report_poisoned(self, poisoned: dict[str, tuple[Op, str]]) -> None:
        """Fail the adds of poisoned new jobs; quarantine and report acknowledged ones."""
        for job_id, (op, reason) in poisoned.items():
            log.error("Redis refused the write of job %s (%s); dropping it", job_id, reason)
            for ack in op.acks:  # add() and write_ahead() raise PoisonedRecordsError for it
                ack.settle(job_id, reason)
            if any(not ack.ahead for ack in op.acks):  # not acknowledged yet: nothing to move
                continue
            assert self._redis is not None
            try:
                await quarantine(self._redis, self.prefix, self._node, job_id, reason)
            except (RedisError, OSError) as exc:  # reported all the same; the next resume retries
                log.warning("could not quarantine job %s (%s)", job_id, _describe(exc))
            self._poisoned(op.job, job_id, reason)

    def _rows(self, ops: list[tuple[str, Op]]) -> list[tuple[list[bytes | str], list[str]]]:
        """The encoded records of ``ops`` (a seam tests use to write a malformed row)."""
        return [encode_record(op.job) for _id, op in ops if op.job is not None]

    # -- reads ------------------------------------------------------------------------------

    async def exists(self, jobs: Sequence[JobRecord]) -> list[bool]:
        """Whether each record is still stored; checked after the writes queued before it.

        Raises:
            StorageUnavailableError: Redis is unavailable.
        """
        if not jobs:
            return []
        if not self.available or self._wake is None:
            raise self._unavailable()
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._reads.append(([job_key(self.prefix, self._node, job.id) for job in jobs], future))
        self._wake.set()
        return await future

    async def tombstoned(self, jobs: Sequence[JobRecord]) -> list[bool]:
        """Whether each job's record was destroyed on purpose (a tombstone is there).

        The node asks this when a timer finds a record missing: True is a cancellation (the
        monitor or API destroyed it within the tombstone's 7 days), False a lost record.

        Raises:
            StorageUnavailableError: Redis is unavailable.
        """
        if not jobs:
            return []
        if self._redis is None or not self.available:
            raise self._unavailable()
        pipe = self._redis.pipeline(transaction=False)
        for job in jobs:
            pipe.exists(tombstone_key(self.prefix, self._node, job.id))
        try:
            replies = await pipe.execute()
        except RedisError as exc:
            self._mark_down(exc)
            raise self._unavailable(exc) from exc
        return [bool(reply) for reply in replies]

    async def prune(
        self, status: str, *, before: float | None = None, keep_last: int | None = None,
        dry_run: bool = False,
    ) -> Pruned:  # fmt: skip
        """See :meth:`Storage.prune` and :mod:`reactor.storage.redis_resume`."""
        if self._redis is None or not self.available:
            raise self._unavailable()
        try:
            return await prune_kept(self._redis, self.prefix, self._node, status, before=before,
                                    keep_last=keep_last, dry_run=dry_run)  # fmt: skip
        except (RedisError, OSError) as exc:
            if not isinstance(exc, RedisError) or classify(exc) != POISON:  # not one key's fault
                self._mark_down(exc)
            raise self._unavailable(exc) from exc

    retries = True

    async def take_retried(self, wait: float) -> list[JobRecord]:
        """Jobs the monitor asked to run again (see :mod:`reactor.storage.redis_retry`).

        Raises:
            StorageUnavailableError: Redis is unavailable.
        """
        if self._redis is None:
            raise RuntimeError("RedisStorage.start() was not called")
        try:
            return await take_retried(self._redis, self.prefix, self._node, wait)
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            raise self._unavailable(exc) from exc

    async def unfinished(self) -> list[JobRecord]:
        """This node's stored jobs whose status is new, in progress, queued or error.

        A corrupt record is quarantined (see :mod:`reactor.storage.redis_resume`) and reported
        through :attr:`on_poisoned`; it never makes this call fail.

        Raises:
            StorageUnavailableError: Redis is unavailable.
        """
        if self._redis is None:
            raise RuntimeError("RedisStorage.start() was not called")
        try:
            return await load_unfinished(self._redis, self.prefix, self._node, self._poisoned)
        except (RedisError, OSError) as exc:
            self._mark_down(exc)
            raise self._unavailable(exc) from exc
