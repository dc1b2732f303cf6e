"""RedisMonitor: a synchronous view of the jobs nodes keep in Redis, for consoles and scripts.

It reads and deletes the keys :mod:`reactor.storage.redis` writes. Deleting a job's record is how
a deferred or periodic job is cancelled: its node checks the record when the job's timer fires.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reactor.config import DEFAULTS
from reactor.errors import ProtocolError, StorageUnavailableError
from reactor.protocol import unpack_args
from reactor.record import STATUSES, UNFINISHED
from reactor.storage.redis_layout import (
    TOMBSTONE_TTL,
    decode_record,
    index_key,
    job_key,
    job_node_key,
    nodes_key,
    quarantine_key,
    quarantined_key,
    safe_url,
    tombstone_key,
)

__all__ = ["RedisMonitor"]

log = logging.getLogger("reactor.monitor")

_CHUNK = 1000


class RedisMonitor:
    """Look at, count and delete stored jobs.

    Args:
        url: the Redis the nodes use (``JR.config["redis_url"]`` by default).
        prefix: the key prefix the nodes' storage uses.

    Raises (from every method):
        StorageUnavailableError: Redis cannot be reached.
    """

    def __init__(self, url: str = DEFAULTS["redis_url"], *, prefix: str = "reactor") -> None:
        self.url = url
        self.prefix = prefix
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=5.0, socket_timeout=30.0)

    def close(self) -> None:
        """Close the connection pool."""
        self.redis.close()

    def __enter__(self) -> RedisMonitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _down(self, exc: Exception) -> StorageUnavailableError:
        return StorageUnavailableError(
            f"cannot reach Redis at {safe_url(self.url)} ({type(exc).__name__}: {exc})"
        )

    def _ids(self, node: str) -> Iterator[list[str]]:
        """The node's job ids, in chunks, from SSCAN over its index set."""
        chunk: list[str] = []
        for member in self.redis.sscan_iter(index_key(self.prefix, node), count=_CHUNK):
            chunk.append(_text(member))
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def nodes(self) -> list[str]:
        """Names of the nodes that have stored jobs, sorted."""
        try:
            names = sorted(_text(m) for m in self.redis.smembers(nodes_key(self.prefix)))
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.scard(index_key(self.prefix, name))
            sizes = pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        return [name for name, size in zip(names, sizes, strict=True) if size]

    def jobs_for(self, node: str, to_be_retried: bool = False) -> dict[str, dict[str, Any]]:
        """``{job_id: record}`` for every job of ``node``.

        Args:
            node: the node's exact name (``node`` never matches ``node_2``).
            to_be_retried: only the unfinished ones (new, in progress, queued, error).
        """
        found: dict[str, dict[str, Any]] = {}
        try:
            for chunk in self._ids(node):
                pipe = self.redis.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hgetall(job_key(self.prefix, node, job_id))
                for raw in pipe.execute():
                    record = _as_dict(raw)
                    if record is None or (to_be_retried and record["status"] not in UNFINISHED):
                        continue
                    found[record["id"]] = record
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        return found

    def counts(self, node: str) -> dict[str, int]:
        """How many of ``node``'s jobs are in each status (every status listed, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        try:
            for chunk in self._ids(node):
                pipe = self.redis.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hget(job_key(self.prefix, node, job_id), "status")
                for status in pipe.execute():
                    if status is not None:
                        name = _text(status)
                        counts[name] = counts.get(name, 0) + 1
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        return counts

    def node_of(self, job_id: str) -> str | None:
        """The node that stores ``job_id``, or None."""
        try:
            node = self.redis.hget(job_node_key(self.prefix), job_id)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        return None if node is None else _text(node)

    def load(self, job_id: str) -> dict[str, Any] | None:
        """The job's record (``args`` decoded to a dict), or None when no such job is stored."""
        node = self.node_of(job_id)
        if node is None:
            return None
        try:
            raw = self.redis.hgetall(job_key(self.prefix, node, job_id))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        return _as_dict(raw)

    def destroy(self, job_id: str) -> bool:
        """Delete the job's record; a deferred or periodic job then never runs again.

        A tombstone (``{prefix}:{<node>}:destroyed:<id>``, kept 7 days) is written first, so the
        node reads the missing record as a cancellation, not as a lost record.

        Returns:
            Whether a record was deleted.
        """
        node = self.node_of(job_id)
        if node is None:
            return False
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(tombstone_key(self.prefix, node, job_id), b"1", ex=TOMBSTONE_TTL)
            pipe.delete(job_key(self.prefix, node, job_id))
            pipe.srem(index_key(self.prefix, node), job_id)
            pipe.hdel(job_node_key(self.prefix), job_id)
            _tomb, deleted, _removed, _unmapped = pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        log.info("destroyed job %s of node %s", job_id, node)
        return bool(deleted)

    def destroy_all_jobs_for(self, node: str) -> int:
        """Delete every job record of ``node`` (exactly that node), leaving tombstones.

        Returns:
            How many records were deleted.
        """
        deleted = 0
        try:
            for chunk in self._ids(node):
                pipe = self.redis.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.set(tombstone_key(self.prefix, node, job_id), b"1", ex=TOMBSTONE_TTL)
                pipe.delete(*(job_key(self.prefix, node, job_id) for job_id in chunk))
                pipe.srem(index_key(self.prefix, node), *chunk)
                pipe.hdel(job_node_key(self.prefix), *chunk)
                deleted += int(pipe.execute()[len(chunk)])
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        log.info("destroyed %d jobs of node %s", deleted, node)
        return deleted

    def quarantined(self, node: str) -> dict[str, dict[str, Any]]:
        """The records of ``node`` its storage moved aside as corrupt.

        Returns:
            ``{job_id: {"reason": why, "type": the raw key's Redis type, "raw": its content}}``;
            ``raw`` is the hash's fields (or the string, list, set) with bytes decoded where they
            are text, None once the raw key was deleted.
        """
        try:
            reasons = self.redis.hgetall(quarantine_key(self.prefix, node))
            found: dict[str, dict[str, Any]] = {}
            for job_id, reason in sorted(reasons.items()):
                key = quarantined_key(self.prefix, node, _text(job_id))
                kind = _text(self.redis.type(key))
                readers: dict[str, Any] = {
                    "hash": self.redis.hgetall,
                    "string": self.redis.get,
                    "list": lambda k: self.redis.lrange(k, 0, -1),
                    "set": self.redis.smembers,
                    "zset": lambda k: self.redis.zrange(k, 0, -1, withscores=True),
                }
                raw = readers[kind](key) if kind in readers else None
                found[_text(job_id)] = {"reason": _text(reason), "type": kind, "raw": _plain(raw)}
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        return found


def _plain(value: Any) -> Any:
    """Bytes decoded where they are UTF-8 text, inside dicts, lists and sets too."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(item) for item in value]
    return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _as_dict(raw: dict[Any, Any]) -> dict[str, Any] | None:
    """A record dict with ``args`` decoded (left as bytes, with a warning, if it is not msgpack)."""
    record = decode_record(raw)
    if record is None:
        return None
    data = record.to_dict()
    try:
        data["args"] = unpack_args(record.args)
    except ProtocolError as exc:
        log.warning("job %s has undecodable args (%s); returning them as bytes", record.id, exc)
    return data
