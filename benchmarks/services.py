"""The throwaway Redis every Redis-backed case shares (reactor's storage and the peers' broker).

Started on first use on a free loopback port, in memory only (no AOF, no snapshots) so that no
framework pays for fsyncs; each user takes its own numbered database, flushed first.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reactor.testing.redis_server import RedisServer

#: Databases: reactor's node storage, Dramatiq's broker, Celery's broker.
DB_REACTOR, DB_DRAMATIQ, DB_CELERY = 0, 1, 2


def redis_available() -> str | None:
    """None when Redis cases can run, else the reason they cannot."""
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH"
    try:
        import reactor.storage.redis
        import reactor.testing.redis_server  # noqa: F401
    except ImportError as exc:
        return f"reactor's Redis support is not importable ({exc})"
    return None


class Services:
    """Lazily started shared services; :meth:`close` stops what was started."""

    def __init__(self) -> None:
        self._redis: RedisServer | None = None

    def redis(self) -> RedisServer:
        """The shared redis-server, started on first call."""
        if self._redis is None:
            from reactor.testing.redis_server import RedisServer

            self._redis = RedisServer(extra_args=("--appendonly", "no")).start()
        return self._redis

    def redis_url(self, db: int) -> str:
        """The URL of database ``db``, emptied first."""
        server = self.redis()
        client = server.client(db)
        try:
            client.flushdb()
        finally:
            client.close()
        return server.url_for(db)

    def redis_version(self) -> str:
        """The server's version, or "" when it was not started."""
        if self._redis is None:
            return ""
        client = self._redis.client()
        try:
            return str(client.info("server").get("redis_version", ""))
        finally:
            client.close()

    def close(self) -> None:
        """Stop the redis-server (by its PID) and remove its directory."""
        if self._redis is not None:
            self._redis.close()
            self._redis = None
