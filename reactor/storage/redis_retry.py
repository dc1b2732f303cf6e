"""The node's side of the monitor's retry list: pop the ids, load the records reset to ``new``.

:meth:`reactor.ops.monitor.RedisMonitor.retry` resets a record and RPUSHes its id onto
``{prefix}:{<node>}:retry``; the node blocks on that list (BLPOP with a timeout, so a retry
starts within a round trip and an idle node costs one command per wait), takes up to
:data:`BATCH` ids at once, and runs the records still marked ``new`` again.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from reactor.jobs.record import NEW, JobRecord
from reactor.storage.redis_layout import decode_record, job_key, retry_key

#: Ids taken from the list per round trip.
BATCH: Final = 500


async def take_retried(
    client: Redis | RedisCluster, prefix: str, node: str, wait: float
) -> list[JobRecord]:
    """Wait up to ``wait`` seconds (whole seconds, at least 1) for ids on the node's retry list;
    return the records of those still marked ``new`` (ids of records gone since are dropped).

    Raises:
        RedisError: Redis failed (the caller marks the storage down).
    """
    key = retry_key(prefix, node)
    first = await client.blpop([key], timeout=max(1, int(wait)))
    if not first:
        return []
    ids: list[bytes | str] = [first[1]]
    more = await client.lpop(key, BATCH - 1)
    if isinstance(more, list):
        ids += more
    pipe = client.pipeline(transaction=False)
    for member in dict.fromkeys(ids):
        job_id = member.decode(errors="replace") if isinstance(member, bytes) else member
        pipe.hgetall(job_key(prefix, node, job_id))
    records: list[JobRecord] = []
    for raw in await pipe.execute(raise_on_error=False):
        if isinstance(raw, Exception) or not raw:
            continue
        record = decode_record(raw)
        if record is not None and record.status == NEW:
            records.append(record)
    return records
