"""Upkeep of a node's records in Redis: reading them back at restart, moving corrupt ones aside
(quarantine), and pruning kept ones (shared by RedisStorage's pruner and ``monitor prune``).

A restart never fails because of one bad key: a record that is not a hash, lacks its id, name
or args, or holds an undecodable field, a non-finite time or an unknown status is renamed to
``{prefix}:{<node>}:quarantined:<id>``, listed with its reason in the node's quarantine hash,
taken out of the node's index and ``job-node``, logged, and reported.

Pruning reads its candidates from the node's sorted set of kept records of one status
(``kept_key``, scored by finish time), never from a scan; each batch is deleted by one script
that checks every record's status first, so a job run again since it was indexed is left alone.
Every key the script names carries the node's hash tag (one Cluster slot); ``job-node`` lives
elsewhere and is cleaned by a separate command.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from reactor.jobs.record import UNFINISHED, JobRecord
from reactor.storage.base import Pruned
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
    kept_key,
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

    Finished records missing from their status's index of kept records (kept before the index
    existed) are added to it (``ZADD NX``, scored by ``failed_at`` or ``run_at``), so pruning
    sees them: this start-up read is the one pass that touches every record anyway.

    Raises:
        RedisError: a failure that is not one record's fault (the caller decides what it means).
    """
    found: list[JobRecord] = []
    seen: set[bytes] = set()
    chunk: list[bytes] = []
    stale: list[str] = []
    kept: dict[str, dict[str, float]] = {}
    async for member in client.sscan_iter(index_key(prefix, node), count=CHUNK):
        if member not in seen:
            seen.add(member)
            chunk.append(member)
        if len(chunk) >= CHUNK:
            await _load_chunk(client, prefix, node, chunk, report, (found, stale, kept))
            chunk = []
    if chunk:
        await _load_chunk(client, prefix, node, chunk, report, (found, stale, kept))
    for status, scores in kept.items():
        for i in range(0, len(scores), CHUNK):
            part = dict(list(scores.items())[i : i + CHUNK])
            await client.zadd(kept_key(prefix, node, status), part, nx=True)
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
    into: tuple[list[JobRecord], list[str], dict[str, dict[str, float]]],
) -> None:
    """Read one chunk of the node's index: unfinished records go to ``found``, finished ones to
    ``kept`` (status -> id -> finish time), ids whose record is missing to ``stale``, and
    corrupt records to quarantine."""
    found, stale, kept = into
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
            else:
                finished = record.failed_at or record.run_at or record.enqueued_at
                kept.setdefault(record.status, {})[job_id] = finished
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


# -- pruning kept records ---------------------------------------------------------------------

#: Records pruning examines per round trip (one script call deletes up to this many).
PRUNE_BATCH: Final = 1000

#: KEYS: the status's sorted set, the node's index, then one job hash per candidate; ARGV: the
#: status, then the candidates' ids. Deletes the records still of that status, drops index
#: entries whose record is gone or changed status; returns the removed ids and names, flat.
PRUNE_LUA: Final = """
local removed = {}
for i = 3, #KEYS do
  local id = ARGV[i - 1]
  local fields = redis.call('HMGET', KEYS[i], 'status', 'name')
  if fields[1] == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('SREM', KEYS[2], id)
    removed[#removed + 1] = id
    removed[#removed + 1] = fields[2] or ''
  end
  redis.call('ZREM', KEYS[1], id)
end
return removed
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _allowed(client: Client, zkey: str, keep_last: int | None) -> int:
    """How many of the oldest entries may go: all but the ``keep_last`` newest."""
    count = int(await client.zcard(zkey))
    return count if keep_last is None else max(0, count - keep_last)


async def _candidates(
    client: Client, zkey: str, before: float | None, start: int, count: int
) -> list[tuple[str, float]]:
    """Up to ``count`` index entries from rank ``start`` that finished before ``before``."""
    if count <= 0:
        return []
    top = "+inf" if before is None else f"({before!r}"
    rows: list[Any] = await client.zrangebyscore(
        zkey, "-inf", top, start=start, num=count, withscores=True
    )
    return [(_text(member), float(score)) for member, score in rows]


async def _listed(
    client: Client, prefix: str, node: str, status: str, rows: list[tuple[str, float]]
) -> list[tuple[str, str, float]]:
    """The candidates whose record still has ``status`` (a dry run's listing), with names."""
    pipe = client.pipeline(transaction=False)
    for job_id, _score in rows:
        pipe.hmget(job_key(prefix, node, job_id), "status", "name")
    replies = await pipe.execute()
    return [
        (job_id, _text(fields[1] or b""), score)
        for (job_id, score), fields in zip(rows, replies, strict=True)
        if fields[0] is not None and _text(fields[0]) == status
    ]


async def _delete(
    client: Client, prefix: str, node: str, status: str, rows: list[tuple[str, float]]
) -> list[tuple[str, str, float]]:
    """Delete one batch of candidates (one script call); the ones actually removed."""
    keys = [kept_key(prefix, node, status), index_key(prefix, node)]
    keys += [job_key(prefix, node, job_id) for job_id, _score in rows]
    ids = [job_id for job_id, _score in rows]
    flat = await client.execute_command("EVAL", PRUNE_LUA, len(keys), *keys, status, *ids)
    scores = dict(rows)
    removed = [
        (_text(flat[i]), _text(flat[i + 1]), scores[_text(flat[i])]) for i in range(0, len(flat), 2)
    ]
    if removed:  # job-node is outside the node's slot: a command of its own
        gone = [job_id for job_id, _name, _at in removed]
        await client.execute_command("EVAL", UNMAP_LUA, 1, job_node_key(prefix), node, *gone)
    return removed


async def prune_kept(
    client: Client,
    prefix: str,
    node: str,
    status: str,
    *,
    before: float | None = None,
    keep_last: int | None = None,
    dry_run: bool = False,
) -> Pruned:
    """Remove (or, ``dry_run``, list) ``node``'s kept records of ``status`` that finished
    before ``before`` and are not among the ``keep_last`` newest; see :meth:`Storage.prune`.

    Raises:
        RedisError: Redis failed; the caller decides what an outage means.
    """
    zkey = kept_key(prefix, node, status)
    result = Pruned()
    allowed = await _allowed(client, zkey, keep_last)
    start = 0
    while allowed > 0:
        rows = await _candidates(client, zkey, before, start, min(PRUNE_BATCH, allowed))
        if not rows:
            break
        if dry_run:
            result.removed += await _listed(client, prefix, node, status, rows)
            start += len(rows)
            allowed -= len(rows)
        else:
            result.removed += await _delete(client, prefix, node, status, rows)
            allowed = await _allowed(client, zkey, keep_last)
    oldest = await client.zrange(zkey, 0, 0, withscores=True)
    result.oldest = float(oldest[0][1]) if oldest else None
    result.left = int(await client.zcard(zkey))
    return result
