"""Distributor announcements in Redis: who serves where, until when, and what it sees.

A minimal read side (and a publisher for tests) matching the API of the application-lifecycle
work (``Announcement``, ``list_announcements``), so the dashboard can be built against it; that
work's module replaces this one when it lands.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Final

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

__all__ = ["ANNOUNCE_KEY", "Announcement", "list_announcements", "publish"]

#: The hash of announcements: field = distributor session, value = msgpack of its fields.
ANNOUNCE_KEY: Final = "reactor:{announce}"

Client = Redis | RedisCluster


@dataclass
class Announcement:
    """One distributor's registration: its address and a snapshot, valid until ``lease_until``."""

    group: str
    session: str
    address: str
    pid: int
    hostname: str
    lease_until: float
    snapshot: dict[str, object] = field(default_factory=dict)


async def publish(client: Client, announcement: Announcement) -> None:
    """Write (or renew) ``announcement``."""
    packed = msgpack.packb(asdict(announcement), use_bin_type=True)
    await client.hset(ANNOUNCE_KEY, announcement.session, packed)


async def list_announcements(client: Client) -> list[Announcement]:
    """The announcements whose lease has not run out, by group then address; expired or
    unreadable ones are deleted on the way."""
    raw = await client.hgetall(ANNOUNCE_KEY)
    now = time.time()
    found: list[Announcement] = []
    stale: list[bytes | str] = []
    for session, packed in raw.items():
        try:
            announcement = Announcement(**msgpack.unpackb(packed, raw=False))
        except (ValueError, TypeError):
            stale.append(session)
            continue
        if announcement.lease_until > now:
            found.append(announcement)
        else:
            stale.append(session)
    if stale:
        await client.hdel(ANNOUNCE_KEY, *stale)
    return sorted(found, key=lambda a: (a.group, a.address))
