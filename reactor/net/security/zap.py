"""The ZAP handler: one thread per ZeroMQ context answering CURVE authentication requests."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import zmq
import zmq.auth
from zmq.utils import z85

from reactor.errors import ConfigError
from reactor.net.security.keys import ZAP_ENDPOINT

if TYPE_CHECKING:
    from reactor.net.security import CurveServer

log = logging.getLogger("reactor.security")


class _ZapThread(threading.Thread):
    """Answers one ZeroMQ context's ZAP requests (RFC 27), off the event loop.

    ZeroMQ has one ZAP endpoint per context, so every CurveServer registers its own ZAP domain
    here; a request for a domain nobody registered (any more), for another mechanism, or from a
    key the domain's allow-list lacks is refused. The reply's user id is the client's z85 key,
    which ZeroMQ then attaches to every frame of that connection (see ``Guard``).
    """

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        super().__init__(name="reactor-zap", daemon=True)
        self.ctx = ctx
        self.domains: dict[bytes, CurveServer] = {}
        self._stop_address = f"inproc://reactor-zap-stop-{id(self):x}"
        self._ready = threading.Event()
        self._error: zmq.ZMQError | None = None

    def start_and_wait(self) -> None:
        """Start, and return once the ZAP endpoint is bound.

        Raises:
            ConfigError: another ZAP handler owns the context's endpoint.
        """
        self.start()
        self._ready.wait(10)
        if self._error is not None:
            raise ConfigError(
                f"cannot start the CURVE authentication (ZAP) handler: {self._error}; another "
                "ZAP handler already runs in this process on reactor's ZeroMQ context"
            )

    def run(self) -> None:
        zap: zmq.Socket[bytes] = self.ctx.socket(zmq.REP)
        zap.linger = 0
        try:
            zap.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._error = exc
            zap.close(linger=0)
            self._ready.set()
            return
        stop: zmq.Socket[bytes] = self.ctx.socket(zmq.PAIR)
        stop.linger = 0
        stop.bind(self._stop_address)
        self._ready.set()
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(stop, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if stop in ready:
                    return
                if zap in ready:
                    request = zap.recv_multipart()
                    zap.send_multipart(self._answer(request))
        finally:
            zap.close(linger=0)
            stop.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        request_id = request[1] if len(request) > 1 else b""
        status, text, user = b"400", b"refused", b""
        try:
            if len(request) == 7 and request[0] == b"1.0" and request[5] == b"CURVE":
                server = self.domains.get(request[2])
                if server is not None and len(request[6]) == 32:
                    key = z85.encode(request[6])
                    if server.zap_allows(key):
                        status, text, user = b"200", b"OK", key
                elif server is None:
                    text = b"unknown ZAP domain"
        except Exception:  # a reply is owed whatever happens, or the REP socket jams
            log.exception("the ZAP handler failed on a request; refused it")
            status, text, user = b"500", b"internal error", b""
        return [b"1.0", request_id, status, text, user, b""]

    def halt(self) -> None:
        """Stop the thread and wait for it."""
        if self.is_alive():
            poke: zmq.Socket[bytes] = self.ctx.socket(zmq.PAIR)
            poke.linger = 0
            poke.connect(self._stop_address)
            poke.send(b"stop")
            self.join(10)
            poke.close(linger=0)


class _ZapHandlers:
    """The process's ZAP threads, one per ZeroMQ context, shared by every CurveServer.

    A thread lives as long as its context: stopping and rebinding the endpoint would race with
    sockets still handshaking.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[int, _ZapThread] = {}

    def register(self, ctx: zmq.Context[Any], domain: str, server: CurveServer) -> None:
        with self._lock:
            thread = self._threads.get(id(ctx))
            if thread is None or not thread.is_alive():
                thread = _ZapThread(ctx)
                thread.start_and_wait()
                self._threads[id(ctx)] = thread
            thread.domains[domain.encode()] = server

    def unregister(self, ctx: zmq.Context[Any], domain: str) -> None:
        with self._lock:
            thread = self._threads.get(id(ctx))
            if thread is not None:
                thread.domains.pop(domain.encode(), None)

    def stop(self, ctx: zmq.Context[Any]) -> None:
        """Stop the context's thread (before terminating a private context, and in tests)."""
        with self._lock:
            thread = self._threads.pop(id(ctx), None)
        if thread is not None:
            thread.halt()

    def running(self, ctx: zmq.Context[Any]) -> bool:
        with self._lock:
            thread = self._threads.get(id(ctx))
            return thread is not None and thread.is_alive()


ZAP_HANDLERS = _ZapHandlers()
