"""Reading a node's records back at restart, and moving corrupt ones aside (quarantine).

A restart never fails because of one bad key: a record that is not a hash, lacks its id, name
or args, or holds an undecodable field, a non-finite time or an unknown status is renamed to
``{prefix}:{<node>}:quarantined:<id>``, listed with its reason in the node's quarantine hash,
taken out of the node's index and ``job-node``, logged, and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from reactor.jobs.record import UNFINISHED, JobRecord
from reactor.storage.redis_batch import Client
from reactor.storage.redis_errors import POISON, classify, describe
from reactor.storage.redis_layout import (
    CHUNK,
    QUARANTINE_LUA,
    UNMAP_LUA,
    check_record,
    index_key,
    job_key,
    job_node_key,
    quarantine_key,
    quarantined_key,
    tombstone_key,
)

log = logging.getLogger("reactor.storage")

Report = Callable[[JobRecord | None, str, str], None]


async def quarantine(client: Client, prefix: str, node: str, job_id: str, reason: str) -> None:
    """Move ``job_id``'s raw key aside and out of the node's indexes.

    The node's own keys move in one script (one Cluster slot); ``job-node`` lives in another
    slot and is updated by a separate command, only where it still names this node.
    """
    keys = (
        job_key(prefix, node, job_id),
        quarantined_key(prefix, node, job_id),
        quarantine_key(prefix, node),
        index_key(prefix, node),
    )
    await client.eval(QUARANTINE_LUA, len(keys), *keys, job_id, reason)
    await client.eval(UNMAP_LUA, 1, job_node_key(prefix), node, job_id)
    log.warning(
        "quarantined the record of job %s of node %s (%s): it is kept as %s",
        job_id,
        node,
        reason,
        keys[1],
    )


async def load_unfinished(
    client: Client, prefix: str, node: str, report: Report
) -> list[JobRecord]:
    """The node's resumable records, sorted by ``run_at``; corrupt ones are quarantined.

    Raises:
        RedisError: a failure that is not one record's fault (the caller decides what it means).
    """
    found: list[JobRecord] = []
    seen: set[bytes] = set()
    chunk: list[bytes] = []
    stale: list[str] = []
    async for member in client.sscan_iter(index_key(prefix, node), count=CHUNK):
        if member not in seen:
            seen.add(member)
            chunk.append(member)
        if len(chunk) >= CHUNK:
            await _load_chunk(client, prefix, node, chunk, report, found, stale)
            chunk = []
    if chunk:
        await _load_chunk(client, prefix, node, chunk, report, found, stale)
    if stale:
        await _forget_stale(client, prefix, node, stale)
    found.sort(key=lambda job: job.run_at)
    return found


async def _load_chunk(
    client: Client,
    prefix: str,
    node: str,
    ids: list[bytes],
    report: Report,
    found: list[JobRecord],
    stale: list[str],
) -> None:
    """Read one chunk of the node's index: unfinished records go to ``found``, ids whose record
    is missing to ``stale``, and corrupt records to quarantine."""
    pipe = client.pipeline(transaction=False)
    for member in ids:
        pipe.hgetall(job_key(prefix, node, member.decode(errors="replace")))
    replies = await pipe.execute(raise_on_error=False)
    for member, raw in zip(ids, replies, strict=True):
        job_id = member.decode(errors="replace")
        if isinstance(raw, Exception):
            if classify(raw) != POISON:
                raise raw
            record, reason = None, f"unreadable ({describe(raw)})"
        else:
            record, reason = check_record(raw, job_id)
        if record is not None:
            if record.status in UNFINISHED:
                found.append(record)
        elif reason == "missing":  # a removal cut short between DEL and SREM
            stale.append(job_id)
        else:
            await quarantine(client, prefix, node, job_id, reason)
            report(None, job_id, reason)


async def _forget_stale(client: Client, prefix: str, node: str, stale: list[str]) -> None:
    """Take index entries without a record out of the index, warning of those that vanished
    without a destroy (no tombstone)."""
    pipe = client.pipeline(transaction=False)
    for job_id in stale:
        pipe.exists(tombstone_key(prefix, node, job_id))
    lost = [job_id for job_id, dead in zip(stale, await pipe.execute(), strict=True) if not dead]
    await client.srem(index_key(prefix, node), *stale)
    if lost:
        log.warning(
            "%d records of node %s vanished without a destroy (evicted, or deleted by hand): %s",
            len(lost),
            node,
            ", ".join(lost[:10]) + (" ..." if len(lost) > 10 else ""),
        )
