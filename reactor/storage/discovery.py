"""Distributors announced in Redis, and nodes that follow them as they come and go.

A distributor started with ``announce=URL`` registers itself (:class:`Announcer`): its address,
group, session, pid, hostname, a lease renewed on every heartbeat tick, and its live snapshot.
A node started with ``discover=URL`` (:class:`reactor.node.follower.Follower`) dials every live
announcement. Joins and graceful leaves are pushed on a pub/sub channel; a distributor that
dies without saying so is dropped when its lease runs out (the follower re-reads it then: no
polling in between).

Keys (``prefix`` defaults to ``reactor``; ``{discovery}`` is a Redis Cluster hash tag, so every
key is in one slot and the scripts below work unchanged on a Cluster)::

    {prefix}:{discovery}:distributors   hash  session -> announcement (JSON)
    {prefix}:{discovery}:leases         zset  session -> lease end (epoch seconds)
    {prefix}:{discovery}:events         channel  {"event": "up"|"down", "session", "address",
                                                  "lease_until"}

Leases compare wall clocks of different hosts: keep them in sync (NTP) to well under a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from reactor.storage.client import Client, make_client, safe_url

log = logging.getLogger("reactor.discovery")

__all__ = ["Announcement", "Announcer", "list_announcements"]

PREFIX = "reactor"
#: A snapshot that took t seconds is taken again no sooner than this many times t later.
SNAPSHOT_SHARE = 50

#: Register or renew: KEYS hash, leases; ARGV session, record, lease end, channel, up event.
#: Publishes the up event only when the session was not registered (a join, or a comeback).
_REGISTER = """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if new == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return new
"""
#: Unregister: KEYS hash, leases; ARGV session, channel, down event.
_UNREGISTER = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""
#: Drop lapsed leases and tell everyone: KEYS hash, leases; ARGV now, channel.
PRUNE = """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, s in ipairs(dead) do
  redis.call('HDEL', KEYS[1], s)
  redis.call('ZREM', KEYS[2], s)
  redis.call('PUBLISH', ARGV[2], cjson.encode({event = 'down', session = s}))
end
return dead
"""


def hash_key(prefix: str = PREFIX) -> str:
    """The hash of announcements, by session."""
    return f"{prefix}:{{discovery}}:distributors"


def leases_key(prefix: str = PREFIX) -> str:
    """The sorted set of lease ends, by session."""
    return f"{prefix}:{{discovery}}:leases"


def channel(prefix: str = PREFIX) -> str:
    """The pub/sub channel of joins and leaves."""
    return f"{prefix}:{{discovery}}:events"


@dataclass(frozen=True)
class Announcement:
    """One distributor as it announced itself (the dashboard's read model)."""

    group: str
    session: str
    address: str
    pid: int
    hostname: str
    lease_until: float  # wall-clock epoch seconds
    snapshot: dict[str, object]  # Distributor.snapshot() at the last renewal, JSON-safe

    @classmethod
    def from_json(cls, raw: bytes | str) -> Announcement:
        """Decode a stored announcement.

        Raises:
            ValueError: not an announcement.
        """
        data = json.loads(raw)
        try:
            return cls(
                group=str(data["group"]),
                session=str(data["session"]),
                address=str(data["address"]),
                pid=int(data["pid"]),
                hostname=str(data["hostname"]),
                lease_until=float(data["lease_until"]),
                snapshot=dict(data.get("snapshot") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an announcement: {exc}") from exc

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(
            {
                "group": self.group,
                "session": self.session,
                "address": self.address,
                "pid": self.pid,
                "hostname": self.hostname,
                "lease_until": self.lease_until,
                "snapshot": self.snapshot,
            },
            default=str,
        )


async def list_announcements(client: Client, *, prefix: str = PREFIX) -> list[Announcement]:
    """Every distributor whose lease has not run out, oldest session first by address."""
    raw: dict[Any, Any] = await client.hgetall(hash_key(prefix))
    now = time.time()
    found: list[Announcement] = []
    for session, value in raw.items():
        try:
            item = Announcement.from_json(value)
        except ValueError:
            log.warning("ignoring a malformed announcement for session %r", session)
            continue
        if item.lease_until > now:
            found.append(item)
    return sorted(found, key=lambda a: (a.group, a.address, a.session))


def advertised_address(host: str, port: int) -> str:
    """The ``host:port`` nodes should dial: a wildcard bind is announced by this host's address."""
    if host in ("", "0.0.0.0", "*", "::", "[::]"):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    return f"{host}:{port}"


def json_safe(value: object) -> object:
    """``value`` with tuples as lists, non-string keys as strings and unknown objects as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class Announcer:
    """Keeps one distributor registered while it runs (made and used on the distributor's loop).

    Args:
        url: the Redis URL (``redis://``, ``redis+cluster://``, ...).
        group: the application's group name.
        session: the distributor's session id.
        address: ``host:port`` for nodes to dial.
        lease: seconds an announcement lives without a renewal.
        snapshot: called at each renewal for the live view published with the announcement.
    """

    def __init__(
        self,
        url: str,
        *,
        group: str,
        session: str,
        address: str,
        lease: float,
        snapshot: Callable[[], dict[str, Any]],
        prefix: str = PREFIX,
    ) -> None:
        self.url = url
        self.group = group
        self.session = session
        self.address = address
        self.lease = lease
        self._snapshot = snapshot
        self._prefix = prefix
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._closed = False
        self._snap: dict[str, object] = {}
        self._next_snapshot = 0.0

    def _announcement(self) -> Announcement:
        now = time.monotonic()
        if now >= self._next_snapshot:  # a snapshot walks every job: at most 2% of the loop
            snap = json_safe(self._snapshot())
            self._snap = snap if isinstance(snap, dict) else {}
            self._next_snapshot = now + SNAPSHOT_SHARE * (time.monotonic() - now)
        return Announcement(
            group=self.group,
            session=self.session,
            address=self.address,
            pid=os.getpid(),
            hostname=socket.gethostname(),
            lease_until=time.time() + self.lease,
            snapshot=self._snap,
        )

    async def start(self) -> None:
        """Register now (a failure is logged; the next renewal tries again)."""
        await self._register()

    def renew(self) -> None:
        """Renew the lease with a fresh snapshot, unless a renewal is still on its way."""
        if self._closed or (self._task and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self._register())

    async def _register(self) -> None:
        if self._closed:
            return
        if self._client is None:
            self._client = make_client(self.url)
        client = self._client
        item = self._announcement()
        up = json.dumps(
            {
                "event": "up",
                "session": self.session,
                "address": self.address,
                "lease_until": item.lease_until,
            }
        )
        keys = [hash_key(self._prefix), leases_key(self._prefix)]
        try:
            await client.eval(
                _REGISTER,
                2,
                *keys,
                self.session,
                item.to_json(),
                repr(item.lease_until),
                channel(self._prefix),
                up,
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            if not self._failing:
                log.warning(
                    "cannot announce distributor %s at %s (%s); retrying at every heartbeat",
                    self.address,
                    safe_url(self.url),
                    exc,
                )
            self._failing = True
            return
        if self._failing:
            log.info("distributor %s announced again at %s", self.address, safe_url(self.url))
        self._failing = False

    async def stop(self) -> None:
        """Unregister (nodes drop the distributor at once) and close the client."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._task
        client, self._client = self._client, None
        if client is None:
            return
        down = json.dumps({"event": "down", "session": self.session, "address": self.address})
        try:
            await client.eval(
                _UNREGISTER,
                2,
                hash_key(self._prefix),
                leases_key(self._prefix),
                self.session,
                channel(self._prefix),
                down,
            )
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning(
                "could not withdraw distributor %s (%s): nodes drop it when its lease ends",
                self.address,
                exc,
            )
        finally:
            await client.aclose()
