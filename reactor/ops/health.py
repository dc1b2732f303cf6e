"""Liveness and readiness (DESIGN §11): ``GET /healthz`` and ``GET /readyz`` beside ``/metrics``
on a node's or a distributor's metrics port.

* **Liveness** (``/healthz``): the event loop answers. Each request sends a ping through the
  loop (``call_soon_threadsafe``) and waits up to :data:`PING_WAIT` for the answer; a loop that
  has left a ping unanswered for :data:`STALE_AFTER` seconds is not alive (503), unless a ``def``
  job holds it: a node whose loop runs a blocking job is alive (its watchdog thread keeps its
  heartbeats going, so its distributors see it alive too), only not ready.
* **Readiness** (``/readyz``): alive, and the part's own check passes (a node: welcomed by at
  least one distributor, storage up, not blocked by a ``def`` job, not stopping; a distributor:
  bound).

Each answer is ``200 OK`` or ``503 Service Unavailable`` with one line of text saying why.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

__all__ = ["PING_WAIT", "STALE_AFTER", "Health", "serve"]

#: Seconds a ping may stay unanswered before the loop counts as hung (liveness fails).
STALE_AFTER = 10.0
#: Seconds one request waits for the loop's answer to its ping.
PING_WAIT = 0.5

#: The reason a part is not ready, or None when it is.
Check = Callable[[], str | None]


def _nothing() -> str | None:
    return None


class Health:
    """A part's liveness and readiness, asked from the HTTP server's threads.

    Args:
        loop: the part's event loop.
        ready: the reason the part is not ready, or None (called from a server thread: it
            must only read).
        holder: what holds the loop, when a ``def`` job does (e.g. ``"def job x (id) for 3.2
            s"``), or None; a held loop is alive.
        stale_after: seconds an unanswered ping makes the loop hung.
        ping_wait: seconds one request waits for the loop to answer.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        ready: Check,
        holder: Check = _nothing,
        stale_after: float = STALE_AFTER,
        ping_wait: float = PING_WAIT,
    ) -> None:
        self.loop = loop
        self.check_ready = ready
        self.holder = holder
        self.stale_after = stale_after
        self.ping_wait = ping_wait
        self._lock = threading.Lock()
        self._answered = threading.Event()
        self._sent: float | None = None  # when the ping the loop has not answered was sent

    def _pong(self) -> None:
        with self._lock:
            self._sent = None
            self._answered.set()

    def live(self) -> tuple[bool, str]:
        """Whether the loop answers, and one line saying so."""
        if self.loop.is_closed():
            return False, "the event loop is closed"
        with self._lock:
            if self._sent is None:
                self._answered.clear()
                try:
                    self.loop.call_soon_threadsafe(self._pong)
                except RuntimeError:  # closed meanwhile
                    return False, "the event loop is closed"
                self._sent = time.monotonic()
            sent = self._sent
        if self._answered.wait(self.ping_wait):
            return True, "ok: the event loop answers"
        waited = time.monotonic() - sent
        held = self.holder()
        if held is not None:
            return True, f"ok: {held}"
        if waited < self.stale_after:
            return True, f"ok: the event loop has not answered for {waited:.1f} s"
        return False, f"the event loop has not answered for {waited:.1f} s"

    def ready(self) -> tuple[bool, str]:
        """Whether the part is alive and ready, and one line saying so."""
        alive, why = self.live()
        if not alive:
            return False, why
        reason = self.check_ready()
        if reason is not None:
            return False, reason
        return True, "ok: ready"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a request waiting on a hung loop never holds the exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds: no line each."""


def _app(registry: CollectorRegistry, health: Health) -> Callable[..., Iterable[bytes]]:
    """prometheus-client's WSGI app, with /healthz and /readyz answered by ``health``."""
    metrics = make_wsgi_app(registry)
    checks = {"/healthz": health.live, "/readyz": health.ready}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        ok, text = check()
        body = (text + "\n").encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def serve(
    registry: CollectorRegistry, health: Health, port: int, host: str = "127.0.0.1"
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` from ``registry`` and the two probes from ``health`` on ``host:port``,
    from a daemon thread.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("HealthServer", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(
        host, port, _app(registry, health), server_class=server_class, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="reactor-metrics", daemon=True)
    thread.start()
    return server, thread
