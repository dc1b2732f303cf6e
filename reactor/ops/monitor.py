"""RedisMonitor: a synchronous view of the jobs nodes keep in Redis, for consoles and scripts.

It reads and deletes the keys :mod:`reactor.storage.redis` writes. Deleting a job's record is how
a deferred or periodic job is cancelled: its node checks the record when the job's timer fires.

Retrying a job (:meth:`RedisMonitor.retry`) resets its record (status ``new``, attempt 0, due
now, no ``failed_at`` / ``last_error``) and pushes its id onto the list
``{prefix}:{<node>}:retry`` (RPUSH; the node pops from the head). The list carries the node's
name as a hash tag, like the node's other keys, so it lives in their Redis Cluster slot and one
script updates the record and the list atomically. The node consumes the list and schedules each
id it pops whose record is ``new``; ids of records gone since are dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reactor.config import DEFAULTS
from reactor.errors import ProtocolError, StorageUnavailableError
from reactor.jobs.record import CANCELLED, ERROR, FAILED, STATUSES, UNFINISHED
from reactor.ops.cancel import cancel_stored
from reactor.storage.client import make_sync_client
from reactor.storage.redis_layout import (
    MATCH_LUA,
    RETRY_LUA,
    TOMBSTONE_TTL,
    decode_record,
    index_key,
    job_key,
    job_node_key,
    nodes_key,
    quarantine_key,
    quarantined_key,
    retry_key,
    safe_url,
    tombstone_key,
)
from reactor.wire.protocol import unpack_args

__all__ = ["RETRYABLE", "RedisMonitor", "retry_key"]

log = logging.getLogger("reactor.monitor")

_CHUNK = 1000
#: Ids asked of SSCAN per round trip when paging (a 1,000-id batch costs about a millisecond).
_PAGE_SCAN = 1000
#: A page cursor is ``sscan_cursor * _SKIP_BASE + ids_of_that_batch_already_read``.
_SKIP_BASE = 1 << 32
#: Statuses :meth:`RedisMonitor.retry` accepts.
RETRYABLE = frozenset({FAILED, ERROR, CANCELLED})


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
        self.redis = make_sync_client(url, timeout=30.0, detect_cluster=True)
        self._retry_script = self.redis.register_script(RETRY_LUA)
        self._match_script = self.redis.register_script(MATCH_LUA)

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

    def size(self, node: str) -> int:
        """How many job ids ``node``'s index holds (one SCARD)."""
        try:
            return int(self.redis.scard(index_key(self.prefix, node)))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc

    def jobs_page(
        self,
        node: str,
        *,
        status: str | Collection[str] | None = None,
        name: str | None = None,
        limit: int = 20,
        cursor: int = 0,
        tags: Collection[str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of ``node``'s jobs, read with SSCAN a few hundred ids at a time.

        With a filter, a script reads each job's status and name inside Redis (one call per
        batch, all keys in the node's slot); only the matches' records are read (pipelined
        HGETALL). Reading stops as soon as ``limit``
        records are found, so a page costs the same on a node with fifty or fifty million jobs
        (a rare filter still scans until it finds ``limit`` matches or reaches the end).

        Args:
            node: the node's exact name.
            status: only jobs in this status (or in one of these statuses).
            name: only jobs of this job name.
            tags: only jobs carrying every one of these tags.
            limit: at most this many records (>= 1).
            cursor: 0 for the first page, then the ``next_cursor`` of the previous page.

        Returns:
            ``(records, next_cursor)``, records in SSCAN order; ``next_cursor`` is 0 after the
            last page. Like SCAN, a job added or removed while you page may be listed twice or
            not at all; a job present throughout is listed once (unless the set is resized
            between two pages, when it may be listed twice).

        Raises:
            ValueError: ``limit`` < 1 or a negative cursor.
        """
        if limit < 1 or cursor < 0:
            raise ValueError(f"need limit >= 1 and cursor >= 0, not {limit} and {cursor}")
        statuses = {status} if isinstance(status, str) else None if status is None else set(status)
        wanted = _Filter(statuses, name, sorted(set(tags or ())))
        scan, skip = divmod(cursor, _SKIP_BASE)
        found: list[dict[str, Any]] = []
        index = index_key(self.prefix, node)
        try:
            while True:
                next_scan, members = self.redis.sscan(index, scan, count=_PAGE_SCAN)
                ids = [_text(m) for m in members][skip:]
                read = skip
                skip = 0
                if wanted.any:
                    ids, read = self._matching(node, ids, read, wanted, limit - len(found))
                else:
                    ids = ids[: limit - len(found)]
                    read += len(ids)
                if ids:
                    pipe = self.redis.pipeline(transaction=False)
                    for job_id in ids:
                        pipe.hgetall(job_key(self.prefix, node, job_id))
                    for raw in pipe.execute():
                        record = _as_dict(raw)
                        if record is not None and wanted.matches(record):
                            found.append(record)
                if read < len(members):  # stopped inside this batch: resume inside it
                    return found, scan * _SKIP_BASE + read
                scan = int(next_scan)
                if scan == 0 or len(found) >= limit:
                    return found, scan * _SKIP_BASE
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc

    def _matching(
        self,
        node: str,
        ids: list[str],
        read: int,
        wanted: _Filter,
        count: int,
    ) -> tuple[list[str], int]:
        """The first ``count`` of ``ids`` whose status, name and tags match, and how many ids of
        the batch are read once they are found (``read`` counts those skipped before ``ids``)."""
        if not ids:
            return [], read
        reply = self._match_script(
            keys=[job_key(self.prefix, node, job_id) for job_id in ids],
            args=[count, wanted.name or "", len(wanted.tags), *wanted.tags,
                  *sorted(wanted.statuses or ())],
        )  # fmt: skip
        return [ids[int(i) - 1] for i in reply[1:]], read + int(reply[0])

    def retry(self, job_id: str) -> bool:
        """Run a failed (or error, or cancelled) job again from its first attempt.

        Resets the record (status ``new``, attempt 0, due now, ``failed_at`` and ``last_error``
        cleared) and queues its id on the node's retry list (see the module docstring), in one
        atomic script.

        Returns:
            Whether the job was reset; False when no such job is stored or it is not in a
            retryable status (it is new, in progress, queued or complete).
        """
        node = self.node_of(job_id)
        if node is None:
            return False
        try:
            done = self._retry_script(
                keys=[job_key(self.prefix, node, job_id), retry_key(self.prefix, node)],
                args=[repr(time.time()), *sorted(RETRYABLE)],
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        if done:
            log.info(
                "job %s of node %s queued for retry",
                job_id,
                node,
                extra={"job_id": job_id, "node": node},
            )
        return bool(done)

    def retry_failed(
        self,
        node: str,
        *,
        statuses: Collection[str] = (FAILED,),
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Retry every job of ``node`` in one of ``statuses`` (failed ones by default).

        Args:
            node: the node's exact name.
            statuses: which records to retry; each one of :data:`RETRYABLE`.
            progress: called after each chunk with how many more ids were examined.

        Returns:
            How many jobs were reset and queued.

        Raises:
            ValueError: a status that cannot be retried.
        """
        wanted = sorted(set(statuses))
        if not set(wanted) <= RETRYABLE:
            raise ValueError(f"only {', '.join(sorted(RETRYABLE))} jobs can be retried")
        retried = 0
        queue = retry_key(self.prefix, node)
        try:
            for chunk in self._ids(node):
                pipe = self.redis.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hget(job_key(self.prefix, node, job_id), "status")
                chosen = [
                    job_id
                    for job_id, raw in zip(chunk, pipe.execute(), strict=True)
                    if raw is not None and _text(raw) in wanted
                ]
                if chosen:
                    now = repr(time.time())
                    pipe = self.redis.pipeline(transaction=False)
                    for job_id in chosen:  # EVAL as a command: a Cluster pipeline takes that
                        key = job_key(self.prefix, node, job_id)
                        args = (RETRY_LUA, 2, key, queue, now, *wanted)
                        pipe.execute_command("EVAL", *args)
                    retried += sum(int(done) for done in pipe.execute())
                if progress is not None:
                    progress(len(chunk))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        log.info("queued %d jobs of node %s for retry", retried, node, extra={"node": node})
        return retried

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

    def cancel(self, job_id: str) -> bool:
        """Cancel a stored job on its node, running or waiting (see :mod:`reactor.ops.cancel`).

        Returns:
            Whether the job was marked and its node told; False when no such job is stored or
            it has finished already.
        """
        node = self.node_of(job_id)
        if node is None:
            return False
        try:
            done = cancel_stored(self.redis, self.prefix, node, job_id)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from exc
        if done:
            log.info("job %s of node %s cancelled", job_id, node, extra={"job_id": job_id})
        return done

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
                # one slot (the node's hash tag): a DEL command, which a Cluster pipeline takes
                keys = [job_key(self.prefix, node, job_id) for job_id in chunk]
                pipe.execute_command("DEL", *keys)
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


@dataclass(frozen=True, slots=True)
class _Filter:
    """What a page's records must match: a status among ``statuses`` (None: any), the job
    ``name`` (None: any), and every one of ``tags``."""

    statuses: set[str] | None
    name: str | None
    tags: list[str]

    @property
    def any(self) -> bool:
        """Whether anything is filtered at all."""
        return self.statuses is not None or self.name is not None or bool(self.tags)

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether a record read after it was matched in Redis still matches."""
        if self.statuses is not None and record["status"] not in self.statuses:
            return False
        if self.name is not None and record["name"] != self.name:
            return False
        return set(self.tags) <= set(record.get("tags") or ())


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
