"""The write-behind batch of RedisStorage: coalesced per-job writes and the pipeline they make."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from reactor.errors import PoisonedRecordsError
from reactor.jobs.record import JobRecord
from reactor.storage.redis_errors import POISON, classify, describe
from reactor.storage.redis_layout import (
    _ADD,
    _ADD_SHA,
    _BEGIN,
    _CHUNK,
    _REMOVE,
    _UNMAP_SHA,
    _UPDATE,
    _UPDATE_SHA,
    _pack,
    encode_begin,
    index_key,
    job_key,
    job_node_key,
    nodes_key,
)

#: A single Redis, or a Redis Cluster (the layout keeps each node's keys in one slot).
Client = aioredis.Redis | RedisCluster
Reads = list[tuple[list[str], asyncio.Future[list[bool]]]]
Rows = Callable[[list[tuple[str, "_Op"]]], list[tuple[list[bytes | str], list[str]]]]


@dataclass(slots=True)
class _Ack:
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
        if later.kind == _UPDATE or later.kind == _BEGIN:
            if self.kind == _REMOVE:  # an update never brings back a removed record
                return _Op(_REMOVE, None, later.version, acks)
            # A begin adds nothing to a pending add or update (both write the whole record);
            # an update after a begin writes the whole record.
            kind = _UPDATE if self.kind == _BEGIN and later.kind == _UPDATE else self.kind
            return _Op(kind, later.job, later.version, acks)
        return _Op(later.kind, later.job, later.version, acks)


class _BatchFailedError(Exception):
    """A pipeline could not be written because Redis is unavailable.

    ``poisoned`` holds the ops already taken out of the batch as poison: they are put back and
    found again on the next try (nothing is reported from a batch that was not written).
    """

    def __init__(
        self, cause: BaseException, poisoned: dict[str, tuple[_Op, str]] | None = None
    ) -> None:
        super().__init__(describe(cause))
        self.cause = cause
        self.poisoned = {job_id: op for job_id, (op, _why) in (poisoned or {}).items()}


def queue_writes(
    pipe: Pipeline | ClusterPipeline,
    prefix: str,
    node: str,
    ops: dict[str, _Op],
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
    added = [(job_id, op) for job_id, op in ops.items() if op.kind == _ADD]
    updated = [(job_id, op) for job_id, op in ops.items() if op.kind == _UPDATE]
    removed = [job_id for job_id, op in ops.items() if op.kind == _REMOVE]
    for i in range(0, len(added), _CHUNK):
        chunk = added[i : i + _CHUNK]
        packed = _pack([pairs for pairs, _nulls in rows(chunk)])
        keys = [job_key(prefix, node, job_id) for job_id, _op in chunk]
        # execute_command, not pipe.evalsha: a Cluster pipeline blocks the method, not EVALSHA
        pipe.execute_command("EVALSHA", _ADD_SHA, len(keys), *keys, packed)
    for i in range(0, len(updated), _CHUNK):
        chunk = updated[i : i + _CHUNK]
        keys = [job_key(prefix, node, job_id) for job_id, _op in chunk]
        pipe.execute_command("EVALSHA", _UPDATE_SHA, len(keys), *keys, _pack(rows(chunk)))
    begun = [(job_id, op.job) for job_id, op in ops.items() if op.kind == _BEGIN and op.job]
    for i in range(0, len(begun), _CHUNK):
        chunk_jobs = begun[i : i + _CHUNK]
        keys = [job_key(prefix, node, job_id) for job_id, _job in chunk_jobs]
        packed = _pack([encode_begin(job) for _id, job in chunk_jobs])
        pipe.execute_command("EVALSHA", _UPDATE_SHA, len(keys), *keys, packed)
    if not index:
        return
    node_index = index_key(prefix, node)
    if added:
        pipe.sadd(node_index, *(job_id for job_id, _op in added))
        pairs = (item for job_id, _op in added for item in (job_id, node))
        pipe.execute_command("HSET", job_node_key(prefix), *pairs)
        pipe.sadd(nodes_key(prefix), node)
    if removed:
        pipe.delete(*(job_key(prefix, node, job_id) for job_id in removed))
        pipe.srem(node_index, *removed)
        # Only where job-node still names this node: the job may have been reassigned since.
        pipe.execute_command("EVALSHA", _UNMAP_SHA, 1, job_node_key(prefix), node, *removed)


async def find_poisoned(
    client: Client, prefix: str, node: str, ops: dict[str, _Op], *, rows: Rows
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
    ids = [job_id for job_id, op in ops.items() if op.kind != _REMOVE and op.job is not None]
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
