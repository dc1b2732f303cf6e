"""``reactor dashboard``: a web view of distributors, nodes and stored jobs, with retry and destroy.

:class:`Dashboard` serves :func:`make_app` with aiohttp; the CLI wraps it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from .app import is_loopback, make_app
from .source import Source

__all__ = ["Dashboard", "make_app"]

log = logging.getLogger("reactor.dashboard")


class Dashboard:
    """The dashboard's HTTP server.

    Args:
        redis_url: the Redis the nodes store jobs in and distributors announce to.
        host: the address to bind (loopback by default).
        port: the TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        read_only: show, never change: no retry or destroy.
        password: require HTTP basic auth with this password (any user name).
        prefix: the nodes' storage key prefix.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        read_only: bool = False,
        password: str | None = None,
        prefix: str = "reactor",
    ) -> None:
        self.host = host
        self.port = port
        self.app = make_app(
            Source(redis_url, prefix=prefix), read_only=read_only, password=password
        )
        self._runner: web.AppRunner | None = None
        if not is_loopback(host) and not password:
            log.warning(
                "dashboard: bound to %s without a password: anyone who can reach this address "
                "can see every job%s; set --password (or REACTOR_PASSWORD) or bind 127.0.0.1",
                host,
                "" if read_only else " and retry or destroy them",
            )

    @property
    def url(self) -> str:
        """Where the dashboard answers."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Bind and serve; returns once listening."""
        runner = self._runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        log.info("dashboard serving %s", self.url)

    async def stop(self) -> None:
        """Stop serving and close the Redis connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
