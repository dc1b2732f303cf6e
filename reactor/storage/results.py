"""The result store (``result_store=URL``): final outcomes kept in Redis, readable from any process.

The distributor writes each job's final outcome once, batched (one pipeline per loop iteration
that has outcomes), and publishes it on the job's channel. A node with a result store
(``config["result_store"]``) also keeps the final outcomes its distributor may never hear of
(it is silent, restarted or gone: the enqueuing process exited), unless one is kept already, so
a result outlives the process that enqueued the job; :func:`wait_result` subscribes first,
then reads, so a waiter is woken by the push and never polls. Feedback callables still run only
in the process that enqueued the job.

Keys (``prefix`` defaults to ``reactor``)::

    {prefix}:result:{<job id>}         string  msgpack [1, name, outcome, args, error, at], TTL
                                               config["result_ttl"]
    {prefix}:result:{<job id>}:ready   channel the same bytes, published when it is written

``outcome`` is 0 success, 1 error, 2 cancelled; ``args`` the job's final args (msgpack bytes);
``error`` (type name, message, traceback) or nil; ``at`` the wall-clock time it was written.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import msgpack

from reactor.errors import JobCancelledError, JobFailed, JobTimeoutError, RemoteError
from reactor.storage.client import Client, make_client, safe_url
from reactor.storage.client import pubsub as make_pubsub
from reactor.storage.writer import REDIS_FAILURES, BatchWriter
from reactor.wire import protocol as P

log = logging.getLogger("reactor.results")

PREFIX = "reactor"
SUCCESS, ERROR, CANCELLED = 0, 1, 2
#: Keep and publish one outcome: KEYS its key; ARGV the outcome, TTL ms, channel. A script, as
#: a Cluster pipeline refuses PUBLISH; published from a script it still reaches every node.
_KEEP = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"""
#: The same for a node keeping an outcome its distributor may never hear of: only if none is
#: kept yet (the distributor's own write, when it comes, is the one that counts).
_KEEP_NEW = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PUBLISH', ARGV[3], ARGV[1])
end
return 1
"""
#: Outcomes kept in memory while Redis is unreachable; older ones are dropped (counted, logged).
MAX_PENDING = 100_000


def result_key(job_id: str, prefix: str = PREFIX) -> str:
    """Where a job's outcome is kept."""
    return f"{prefix}:result:{{{job_id}}}"


def ready_channel(job_id: str, prefix: str = PREFIX) -> str:
    """Where a job's outcome is published when it is written."""
    return f"{result_key(job_id, prefix)}:ready"


def encode(name: str, fb: P.Feedback | None) -> bytes:
    """A final outcome as stored; ``fb`` None is a cancel the application made."""
    if fb is None:
        return bytes(msgpack.packb([1, name, CANCELLED, b"\x80", None, time.time()]))
    outcome = (
        SUCCESS if fb.outcome == P.SUCCESS else CANCELLED if fb.outcome == P.CANCELLED else ERROR
    )
    error = list(fb.error) if fb.error is not None else None
    return bytes(msgpack.packb([1, name, outcome, fb.args, error, time.time()]))


def decode(job_id: str, raw: bytes) -> dict[str, Any]:
    """The final args of a stored outcome.

    Raises:
        JobFailed: the job ended in error (``args["error"]`` is the RemoteError).
        JobCancelledError: the job was cancelled.
        ValueError: ``raw`` is not a stored outcome.
    """
    try:
        _, name, outcome, packed, error, _ = msgpack.unpackb(raw)
        args = P.unpack_args(packed)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"the stored result of job {job_id} is malformed: {exc}") from exc
    if outcome == SUCCESS:
        return args
    if outcome == CANCELLED:
        raise JobCancelledError(f"job {job_id} ({name!r}) was cancelled")
    remote = RemoteError(*error) if error else RemoteError("Error", "the job failed")
    args["error"] = remote
    raise JobFailed(job_id, remote, args)


async def wait_result(
    client: Client, job_id: str, timeout: float | None = None, *, prefix: str = PREFIX
) -> dict[str, Any]:
    """Wait for job ``job_id``'s final outcome in the result store.

    Args:
        client: a client of the result store's Redis.
        timeout: seconds to wait; None waits as long as it takes.

    Returns:
        The job's final args.

    Raises:
        JobFailed: the job ended in error.
        JobCancelledError: the job was cancelled.
        JobTimeoutError: no outcome within ``timeout`` (the job may still finish).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pubsub = await make_pubsub(client)
    try:
        await pubsub.subscribe(ready_channel(job_id, prefix))
        raw: Any = await client.get(result_key(job_id, prefix))
        while raw is None:
            left = 30.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise JobTimeoutError(
                    f"no result for job {job_id} within {timeout}s; it may still finish "
                    "(or its result expired after config['result_ttl'])"
                )
            message = await pubsub.get_message(
                ignore_subscribe_messages=True, timeout=min(left, 30.0)
            )
            if message is not None and message.get("type") == "message":
                raw = message["data"]
            elif message is None:  # a quiet stretch: read again, in case a push was missed
                raw = await client.get(result_key(job_id, prefix))
    finally:
        with contextlib.suppress(*REDIS_FAILURES):
            await pubsub.aclose()
    return decode(job_id, raw)


class ResultWriter:
    """Writes final outcomes to the result store (made and used on one loop), batched by a
    :class:`~reactor.storage.writer.BatchWriter`: a job's later outcome replaces one not yet
    written, at most :data:`MAX_PENDING` wait while Redis is unreachable.

    A distributor writes every final outcome it receives; a node (``only_new``) writes those its
    distributor may never hear of, and never over one already kept.

    Args:
        url: the Redis URL.
        ttl: seconds each outcome is kept (``config["result_ttl"]``).
        only_new: write an outcome only where none is kept yet.
    """

    def __init__(
        self, url: str, *, ttl: float, prefix: str = PREFIX, only_new: bool = False
    ) -> None:
        self.url = url
        self.ttl = ttl
        self._script = _KEEP_NEW if only_new else _KEEP
        self._prefix = prefix
        self._client: Client | None = None
        self._writer: BatchWriter[str, bytes] = BatchWriter(
            self._write, what="job results", where=safe_url(url), log=log, limit=MAX_PENDING
        )

    @property
    def written(self) -> int:
        """Outcomes written."""
        return self._writer.written

    @property
    def dropped(self) -> int:
        """Outcomes dropped (Redis unreachable too long)."""
        return self._writer.dropped

    def record(self, job_id: str, name: str, fb: P.Feedback | None) -> None:
        """Keep ``job_id``'s final outcome (``fb`` None: cancelled by the application)."""
        self._writer.put(job_id, encode(name, fb))

    async def _write(self, batch: dict[str, bytes]) -> None:
        if self._client is None:
            self._client = make_client(self.url)
        pipe = self._client.pipeline(transaction=False)
        ttl_ms = max(1, int(self.ttl * 1000))
        for job_id, raw in batch.items():
            channel = ready_channel(job_id, self._prefix)
            pipe.eval(self._script, 1, result_key(job_id, self._prefix), raw, ttl_ms, channel)
        await pipe.execute()

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (waiting at most ``timeout``), then close the client."""
        await self._writer.close(timeout)
        if self._client is not None:
            with contextlib.suppress(*REDIS_FAILURES):
                await self._client.aclose()
            self._client = None
