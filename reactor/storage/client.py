"""Async Redis clients for the application-side features: discovery, the outbox, the result store.

They read the same URLs as Redis storage (``redis://``, ``rediss://``, ``unix://``,
``redis+cluster://``, ``rediss+cluster://``), parsed by :func:`reactor.storage.redis_layout.
cluster_url`, and reconnect with redis-py's jittered exponential ``Retry``.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reactor.errors import ConfigError
from reactor.storage.redis_batch import Client
from reactor.storage.redis_layout import cluster_url, safe_url

__all__ = ["Client", "SyncClient", "make_client", "make_sync_client", "pubsub", "safe_url"]

#: A blocking client, for callers on application threads (a round trip, no event loop).
SyncClient = redis.Redis | redis.RedisCluster


def _checked(url: str) -> tuple[str, bool]:
    """``(url for redis-py, whether it names a Cluster)``; ConfigError when it does not parse."""
    client_url, cluster = cluster_url(url)
    try:
        parse_url(client_url)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {safe_url(url)!r}: {exc}") from exc
    return client_url, cluster


def make_client(url: str) -> Client:
    """A client for ``url``: a :class:`RedisCluster` for ``redis+cluster://`` URLs.

    Raises:
        ConfigError: the URL does not parse.
    """
    client_url, cluster = _checked(url)
    retry = Retry(
        ExponentialWithJitterBackoff(cap=1.0, base=0.05),
        3,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )
    if cluster:
        return RedisCluster.from_url(
            client_url, socket_connect_timeout=5.0, socket_timeout=10.0, retry=retry
        )
    return aioredis.Redis.from_url(
        client_url, socket_connect_timeout=5.0, socket_timeout=10.0, retry=retry
    )


def make_sync_client(
    url: str, *, timeout: float = 10.0, detect_cluster: bool = False
) -> SyncClient:
    """A blocking client for ``url`` (a Cluster client for ``redis+cluster://`` URLs), for
    application threads that wait for one round trip themselves (unique keys, the monitor).

    Args:
        url: the Redis URL.
        timeout: seconds a command may take.
        detect_cluster: also give a Cluster client for a ``redis://`` URL that names a Redis
            Cluster node (asked once with INFO; an unreachable Redis, or one that forbids INFO,
            is taken as the single Redis the URL says and reported by the first command).

    Raises:
        ConfigError: the URL does not parse.
    """
    client_url, cluster = _checked(url)
    if not cluster:
        plain = redis.Redis.from_url(client_url, socket_connect_timeout=5.0, socket_timeout=timeout)
        if not detect_cluster:
            return plain
        try:
            cluster = bool(int(plain.info("cluster").get("cluster_enabled", 0)))
        except (RedisError, OSError):
            return plain
        if not cluster:
            return plain
        plain.close()
    # Same commands as Redis; MOVED/ASK followed and pipelines split by node.
    return redis.RedisCluster.from_url(
        client_url, socket_connect_timeout=5.0, socket_timeout=timeout
    )


async def pubsub(client: Client) -> PubSub | ClusterPubSub:
    """A pub/sub connection of ``client`` (a Cluster client learns its slots first: its pub/sub
    picks a node by the channel's slot)."""
    if isinstance(client, RedisCluster):
        await client.initialize()
    return client.pubsub()
