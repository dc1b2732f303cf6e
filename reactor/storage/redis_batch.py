"""The write-behind batch of RedisStorage: coalesced per-job writes and the pipeline they make."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from reactor.errors import PoisonedRecordsError, StorageUnavailableError
from reactor.jobs.record import IS_FINISHED, JobRecord
from reactor.storage.redis_errors import AUTH, DOWN, NOSCRIPT, POISON, classify, describe
from reactor.storage.redis_layout import (
    ADD_SHA,
    CHUNK,
    OP_ADD,
    OP_BEGIN,
    OP_REMOVE,
    OP_UPDATE,
    SCRIPTS,
    UNMAP_SHA,
    UPDATE_SHA,
    encode_begin,
    index_key,
    job_key,
    job_node_key,
    kept_key,
    nodes_key,
    pack_rows,
)

#: A single Redis, or a Redis Cluster (the layout keeps each node's keys in one slot).
Client = aioredis.Redis | RedisCluster
Reads = list[tuple[list[str], asyncio.Future[list[bool]]]]
Rows = Callable[[list[tuple[str, "Op"]]], list[tuple[list[bytes | str], list[str]]]]


@dataclass(slots=True)
class Ack:
    """One ``add`` (or ``write_ahead``: ``ahead``) call waiting until the pipeline carrying its
    jobs has been written. An outage fails an ``add`` at once (its jobs are not acknowledged);
    a write-ahead waits for the write across outages."""

    future: asyncio.Future[None]
    remaining: int
    failed: dict[str, str]
    ahead: bool = False

    def settle(self, job_id: str = "", reason: str = "") -> None:
        """One of the call's jobs is written (or, with a ``reason``, could not be)."""
        if reason:
            self.failed[job_id] = reason
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            if self.failed:
                self.future.set_exception(PoisonedRecordsError(dict(self.failed)))
            else:
                self.future.set_result(None)


@dataclass(slots=True)
class Op:
    """The latest pending write for one job id (coalesced).

    The record is encoded only when the pipeline is built, from its state at that moment: most
    updates are superseded by a later one (or a removal) within the same batch, and the latest
    state is what every coalesced write stands for anyway.
    """

    kind: int
    job: JobRecord | None
    version: int
    acks: list[Ack]

    def then(self, later: Op) -> Op:
        """This write followed by ``later``, as one write."""
        acks = self.acks + later.acks
        if later.kind == OP_UPDATE or later.kind == OP_BEGIN:
            if self.kind == OP_REMOVE:  # an update never brings back a removed record
                return Op(OP_REMOVE, None, later.version, acks)
            # A begin adds nothing to a pending add or update (both write the whole record);
            # an update after a begin writes the whole record.
            kind = OP_UPDATE if self.kind == OP_BEGIN and later.kind == OP_UPDATE else self.kind
            return Op(kind, later.job, later.version, acks)
        return Op(later.kind, later.job, later.version, acks)


class BatchFailedError(Exception):
    """A pipeline could not be written because Redis is unavailable.

    ``poisoned`` holds the ops already taken out of the batch as poison: they are put back and
    found again on the next try (nothing is reported from a batch that was not written).
    """

    def __init__(
        self, cause: BaseException, poisoned: dict[str, tuple[Op, str]] | None = None
    ) -> None:
        super().__init__(describe(cause))
        self.cause = cause
        self.poisoned = {job_id: op for job_id, (op, _why) in (poisoned or {}).items()}


def queue_writes(
    pipe: Pipeline | ClusterPipeline,
    prefix: str,
    node: str,
    ops: dict[str, Op],
    *,
    rows: Rows,
    index: bool = True,
) -> None:
    """Put ``ops`` in ``pipe``: a few commands per thousand jobs, whatever the mix.

    Args:
        rows: encodes the records of a chunk of ops.
        index: also update the node's index, ``job-node`` and ``nodes`` (False: only the
            job hashes, one script call per chunk).
    """
    added = [(job_id, op) for job_id, op in ops.items() if op.kind == OP_ADD]
    updated = [(job_id, op) for job_id, op in ops.items() if op.kind == OP_UPDATE]
    removed = [job_id for job_id, op in ops.items() if op.kind == OP_REMOVE]
    for i in range(0, len(added), CHUNK):
        chunk = added[i : i + CHUNK]
        packed = pack_rows([pairs for pairs, _nulls in rows(chunk)])
        keys = [job_key(prefix, node, job_id) for job_id, _op in chunk]
        # execute_command, not pipe.evalsha: a Cluster pipeline blocks the method, not EVALSHA
        pipe.execute_command("EVALSHA", ADD_SHA, len(keys), *keys, packed)
    for i in range(0, len(updated), CHUNK):
        chunk = updated[i : i + CHUNK]
        keys = [job_key(prefix, node, job_id) for job_id, _op in chunk]
        pipe.execute_command("EVALSHA", UPDATE_SHA, len(keys), *keys, pack_rows(rows(chunk)))
    begun = [(job_id, op.job) for job_id, op in ops.items() if op.kind == OP_BEGIN and op.job]
    for i in range(0, len(begun), CHUNK):
        chunk_jobs = begun[i : i + CHUNK]
        keys = [job_key(prefix, node, job_id) for job_id, _job in chunk_jobs]
        packed = pack_rows([encode_begin(job) for _id, job in chunk_jobs])
        pipe.execute_command("EVALSHA", UPDATE_SHA, len(keys), *keys, packed)
    if not index:
        return
    node_index = index_key(prefix, node)
    if added:
        pipe.sadd(node_index, *(job_id for job_id, _op in added))
        pairs = (item for job_id, _op in added for item in (job_id, node))
        pipe.execute_command("HSET", job_node_key(prefix), *pairs)
        pipe.sadd(nodes_key(prefix), node)
    _index_kept(pipe, prefix, node, ops)
    if removed:
        pipe.delete(*(job_key(prefix, node, job_id) for job_id in removed))
        pipe.srem(node_index, *removed)
        # Only where job-node still names this node: the job may have been reassigned since.
        pipe.execute_command("EVALSHA", UNMAP_SHA, 1, job_node_key(prefix), node, *removed)


def _index_kept(
    pipe: Pipeline | ClusterPipeline, prefix: str, node: str, ops: dict[str, Op]
) -> None:
    """Score the records written with a final status (kept ones) by now in their status's
    sorted set, the index pruning reads (one ZADD per status in the batch)."""
    kept: dict[str, dict[str, float]] = {}
    now = 0.0
    for job_id, op in ops.items():
        job = op.job
        if job is not None and op.kind != OP_REMOVE and job.status in IS_FINISHED:
            now = now or time.time()
            kept.setdefault(job.status, {})[job_id] = now
    for status, scores in kept.items():
        pipe.zadd(kept_key(prefix, node, status), scores)


async def find_poisoned(
    client: Client, prefix: str, node: str, ops: dict[str, Op], *, rows: Rows
) -> dict[str, str]:
    """Write each job's record alone (one script call per job) to find the ones that fail.

    The scripts are idempotent, so writing the good jobs here and again with the batch is
    harmless.

    Returns:
        ``{job_id: reason}`` for the jobs whose own write fails.

    Raises:
        RedisError: a failure that is not one job's fault (Redis went unavailable).
    """
    pipe = client.pipeline(transaction=False)
    ids = [job_id for job_id, op in ops.items() if op.kind != OP_REMOVE and op.job is not None]
    for job_id in ids:
        queue_writes(pipe, prefix, node, {job_id: ops[job_id]}, rows=rows, index=False)
    results = await pipe.execute(raise_on_error=False)
    culprits: dict[str, str] = {}
    for job_id, result in zip(ids, results, strict=True):
        if isinstance(result, Exception):
            if classify(result) != POISON:
                raise result
            culprits[job_id] = describe(result)
    return culprits


async def write_batch(
    client: Client, prefix: str, node: str, ops: dict[str, Op], reads: Reads, *, rows: Rows
) -> tuple[list[list[bool]], dict[str, tuple[Op, str]]]:
    """One pipeline: the writes in ``ops``, then the EXISTS checks in ``reads``.

    A job whose own write fails (WRONGTYPE, a script error) is taken out of ``ops`` and
    returned with the reason; the rest of the batch is written again without it.

    Returns:
        The answers to ``reads`` (one list of booleans per read), and the poisoned jobs:
        ``{job_id: (op, reason)}``.

    Raises:
        BatchFailedError: Redis is unavailable, or refused a write no single job explains.
    """
    poisoned: dict[str, tuple[Op, str]] = {}
    for _attempt in range(4):
        pipe = client.pipeline(transaction=False)
        queue_writes(pipe, prefix, node, ops, rows=rows)
        n_writes = len(pipe)
        for keys, _future in reads:
            for key in keys:
                pipe.exists(key)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            raise BatchFailedError(exc, poisoned) from exc
        errors = [r for r in results if isinstance(r, Exception)]
        if not errors:
            answers = iter(bool(r) for r in results[n_writes:])
            return [[next(answers) for _ in keys] for keys, _future in reads], poisoned
        kinds = {classify(e) for e in errors}
        if DOWN in kinds or AUTH in kinds:
            down = next(e for e in errors if classify(e) in (DOWN, AUTH))
            raise BatchFailedError(down, poisoned)
        if NOSCRIPT in kinds:
            # A restarted Redis forgot the scripts; the batch is idempotent: write it again.
            await _load_scripts(client, poisoned)
            continue
        culprits = await _isolate(client, prefix, node, ops, rows, poisoned)
        if not culprits:  # a shared key (the index, job-node) is broken: not one job's fault
            raise BatchFailedError(errors[0], poisoned)
        for job_id, reason in culprits.items():
            poisoned[job_id] = (ops[job_id], reason)
            if ops[job_id].kind == OP_ADD:  # the batch indexed it already: undo that
                ops[job_id] = Op(OP_REMOVE, None, ops[job_id].version, [])
            else:
                del ops[job_id]
    raise BatchFailedError(errors[0], poisoned)


async def _isolate(
    client: Client,
    prefix: str,
    node: str,
    ops: dict[str, Op],
    rows: Rows,
    poisoned: dict[str, tuple[Op, str]],
) -> dict[str, str]:
    """:func:`find_poisoned`, its failure a :class:`BatchFailedError` carrying ``poisoned``."""
    try:
        return await find_poisoned(client, prefix, node, ops, rows=rows)
    except Exception as exc:
        raise BatchFailedError(exc, poisoned) from exc


async def _load_scripts(client: Client, poisoned: dict[str, tuple[Op, str]]) -> None:
    """Load the batch scripts again (a restarted Redis forgot them)."""
    try:
        for body in SCRIPTS.values():
            await client.script_load(body)
    except Exception as exc:
        raise BatchFailedError(exc, poisoned) from exc


def fail_waiters(
    ops: Iterable[Op], error: StorageUnavailableError, *, closing: bool = False
) -> None:
    """Fail the ``add`` calls waiting on ``ops``; their jobs are then forgotten again.

    Write-aheads keep waiting (their writes stay queued) unless the storage is ``closing``.
    """
    for op in ops:
        failing = [ack for ack in op.acks if closing or not ack.ahead]
        if not failing:
            continue
        for ack in failing:
            if not ack.future.done():
                ack.future.set_exception(error)
        op.acks = [ack for ack in op.acks if ack not in failing]
        if op.kind == OP_ADD:  # not acknowledged: do not resume it after a restart
            op.kind, op.job = OP_REMOVE, None


def fail_reads(reads: Reads, error: StorageUnavailableError) -> None:
    """Fail the EXISTS checks waiting in ``reads`` (Redis is unavailable)."""
    for _keys, future in reads:
        if not future.done():
            future.set_exception(error)
