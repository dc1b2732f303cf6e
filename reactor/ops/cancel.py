"""Cancelling a job stored in Redis from outside its application (``reactor monitor cancel``,
the dashboard's Cancel button).

The record is marked ``cancel`` = 1 (only while the job is unfinished), then its id is published
on the node's cancel channel (:func:`~reactor.storage.redis_layout.cancel_channel`). A running
node hears it at once and cancels the job as its distributor's cancel would: a waiting job ends
now and never starts, a running attempt is told to stop (``CancelledError`` in an ``async def``
job, ``current_job().cancelled`` in a ``def`` or ``defer=True`` one) and ends cancelled; its
application gets the cancelled outcome (``JobCancelledError``). A node that is down reads the
mark when it resumes its records and ends the job cancelled then.
"""

from __future__ import annotations

from typing import Any, Final

from reactor.jobs.record import UNFINISHED
from reactor.storage.redis_layout import cancel_channel, job_key

#: KEYS: the job's hash. ARGV: the unfinished statuses. Returns 1 when the record was marked,
#: 0 when it is missing or finished already.
CANCEL_LUA: Final = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
for i = 1, #ARGV do
  if ARGV[i] == status then
    redis.call('HSET', KEYS[1], 'cancel', '1')
    return 1
  end
end
return 0
"""


def cancel_stored(redis: Any, prefix: str, node: str, job_id: str) -> bool:
    """Mark ``job_id``'s record (kept by ``node``) cancelled and tell the node (a blocking
    Redis client, standalone or Cluster). False when the job is gone or finished already.

    Raises:
        RedisError, OSError: Redis failed (the monitor reports it as unavailable).
    """
    marked = redis.eval(CANCEL_LUA, 1, job_key(prefix, node, job_id), *sorted(UNFINISHED))
    if not marked:
        return False
    redis.publish(cancel_channel(prefix, node), job_id)
    return True
