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

import asyncio
import contextlib
import logging
import time
from typing import Any

import msgpack
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisClusterException, RedisError

from reactor.errors import JobCancelledError, JobFailed, JobTimeoutError, RemoteError
from reactor.storage.client import Client, make_client, safe_url
from reactor.storage.client import pubsub as make_pubsub
from reactor.wire import protocol as P

log = logging.getLogger("reactor.results")

PREFIX = "reactor"
SUCCESS, ERROR, CANCELLED = 0, 1, 2
_FAILURES = (RedisError, RedisClusterException, OSError)
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
#: Outcomes kept in memory while Redis is unreachable; older ones are dropped (and counted).
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
        with contextlib.suppress(*_FAILURES):
            await pubsub.aclose()
    return decode(job_id, raw)


class ResultWriter:
    """Writes final outcomes to the result store (made and used on one loop).

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
        self._pending: dict[str, bytes] = {}
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        #: Outcomes written, and dropped (Redis unreachable too long).
        self.written = 0
        self.dropped = 0

    def record(self, job_id: str, name: str, fb: P.Feedback | None) -> None:
        """Keep ``job_id``'s final outcome (``fb`` None: cancelled by the application)."""
        if len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
            self.dropped += 1
        self._pending[job_id] = encode(name, fb)
        if self._task is None:
            self._client = make_client(self.url)
            self._wake, self._idle = asyncio.Event(), asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._write_loop())
        assert self._wake is not None and self._idle is not None
        self._idle.clear()
        self._wake.set()

    async def _write_loop(self) -> None:
        assert self._wake is not None and self._idle is not None and self._client is not None
        backoff = ExponentialWithJitterBackoff(cap=5.0, base=0.1)
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            if not batch:
                self._idle.set()
                continue
            try:
                await self._write(batch)
            except _FAILURES as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "cannot write %d job results to %s (%s); retrying",
                        len(batch),
                        safe_url(self.url),
                        exc,
                    )
                self._pending = {**batch, **self._pending}
                self._wake.set()
                await asyncio.sleep(backoff.compute(failures))
                continue
            failures = 0
            self.written += len(batch)
            if not self._pending:
                self._idle.set()

    async def _write(self, batch: dict[str, bytes]) -> None:
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        ttl_ms = max(1, int(self.ttl * 1000))
        for job_id, raw in batch.items():
            channel = ready_channel(job_id, self._prefix)
            pipe.eval(self._script, 1, result_key(job_id, self._prefix), raw, ttl_ms, channel)
        await pipe.execute()

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (waiting at most ``timeout``), then close the client."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._idle is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        unwritten = not (self._idle is not None and self._idle.is_set())
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if unwritten:
            log.error(
                "%d or more job results were not written to %s before it stopped",
                len(self._pending),
                safe_url(self.url),
            )
        if self._client is not None:
            await self._client.aclose()
            self._client = None
