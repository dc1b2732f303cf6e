"""Unique jobs: ``enqueue(..., unique_key=K, unique_for=S)`` inside the window of an earlier
enqueue with the same key returns that job's handle instead of a new job.

Within one distributor the keys live in memory (thread-safe). Distributors that share a Redis
(``unique_store="redis://..."``) claim each key there with ``SET NX PX``, the value being the
first job's id, so the window holds across them; one Redis round trip per unique enqueue.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactor.distributor.handle import JobHandle
from reactor.errors import ReactorError
from reactor.storage.redis_layout import safe_url

if TYPE_CHECKING:
    from reactor.storage.client import SyncClient

#: Prefix of the Redis keys; the unique key is a Cluster hash tag, so each claim is one slot's.
KEY_PREFIX = "reactor:unique:"


class ForeignJobHandle(JobHandle):
    """The handle of a unique job another distributor enqueued: it carries the job's id, but
    its outcome reaches only that distributor (or a result store, read with ``JR.result``)."""

    __slots__ = ("result_store", "unique_key")

    def __init__(
        self, job_id: str, name: str, unique_key: str, owner: Any, result_store: str | None = None
    ) -> None:
        super().__init__(job_id, name, owner, threading.Lock())
        self.unique_key = unique_key
        self.result_store = result_store

    def _refuse(self, what: str) -> ReactorError:
        return ReactorError(
            f"job {self.id} (unique_key {self.unique_key!r}) was enqueued by another distributor; "
            f"{what} only there. Read its outcome from a result store (JR.result(job_id)) "
            "when the distributors have one"
        )

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The job's final args, read from the result store the distributors share.

        Raises:
            ReactorError: there is no result store (the outcome reaches only the distributor
                that enqueued the job), or this is called on a running event loop (``await
                reactor.storage.results.wait_result(...)`` there).
            JobFailed, JobCancelledError, JobTimeoutError: as ``JR.result``.
        """
        if self.result_store is None:
            raise self._refuse("its outcome arrives")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ReactorError(
                f"job {self.id}: a foreign handle's result() blocks; on an event loop await "
                "reactor.storage.results.wait_result(client, job_id) instead"
            )
        from reactor.storage.client import make_client
        from reactor.storage.results import wait_result

        async def fetch(url: str) -> dict[str, Any]:
            client = make_client(url)
            try:
                return await wait_result(client, self.id, timeout)
            finally:
                await client.aclose()

        return asyncio.run(fetch(self.result_store))

    def cancel(self) -> None:
        """Raises ReactorError: only the distributor that enqueued the job can cancel it."""
        raise self._refuse("it can be cancelled")

    def __await__(self) -> Any:
        raise self._refuse("its outcome arrives")


class UniqueKeys:
    """The unique keys one distributor has claimed, with their windows.

    Args:
        store: a ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://`` URL shared by
            the distributors whose enqueues must be unique together; None: this process only.
        clock: the monotonic clock the in-memory windows run on (tests pass a fake one).
    """

    def __init__(
        self, store: str | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, tuple[JobHandle, float]] = {}  # key -> (first handle, expiry)
        self._expiries: list[tuple[float, str]] = []
        self._redis: SyncClient | None = None
        if store is not None:
            from reactor.storage.client import make_sync_client  # redis only when used

            self._redis = make_sync_client(store)

    def claim(
        self,
        key: str,
        window: float,
        handle: JobHandle,
        foreign: Callable[[str], JobHandle],
    ) -> JobHandle:
        """``handle`` if this enqueue is the first with ``key`` inside its window (the caller
        then sends the job), else the first job's handle (``foreign(job_id)`` when another
        distributor enqueued it).

        Raises:
            ReactorError: the unique store cannot be reached.
        """
        now = self._clock()
        with self._lock:
            self._expire(now)
            held = self._held.get(key)
            if held is not None and held[1] > now:
                return held[0]
            first = handle if self._redis is None else self._claim_shared(key, window, handle)
            if first is handle:
                self._held[key] = (handle, now + window)
                heapq.heappush(self._expiries, (now + window, key))
                return handle
            return foreign(first.id) if isinstance(first, _Remote) else first

    def _claim_shared(self, key: str, window: float, handle: JobHandle) -> JobHandle | _Remote:
        from redis.exceptions import RedisError  # loaded with the client, when a store is used

        assert self._redis is not None
        name = f"{KEY_PREFIX}{{{key}}}"
        ms = max(1, math.ceil(window * 1000))
        try:
            for _ in range(3):  # the first claim may expire between our SET and GET
                if self._redis.set(name, handle.id, nx=True, px=ms):
                    return handle
                first = self._redis.get(name)
                if first is not None:
                    return _Remote(first.decode() if isinstance(first, bytes) else str(first))
        except RedisError as exc:
            raise ReactorError(
                f"cannot check unique_key {key!r} in the unique store {safe_url(str(self.store))}: "
                f"{exc}; is Redis up?"
            ) from exc
        return handle

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, key = heapq.heappop(expiries)
            held = self._held.get(key)
            if held is not None and held[1] <= now:
                del self._held[key]

    def close(self) -> None:
        """Close the Redis connections, if any."""
        if self._redis is not None:
            self._redis.close()


class _Remote:
    """The id of a first job that this distributor does not hold."""

    __slots__ = ("id",)

    def __init__(self, job_id: str) -> None:
        self.id = job_id
