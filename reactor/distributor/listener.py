"""The distributor's bound ROUTER socket: its options, CURVE, and a bind that waits out a port
that a listener closed a moment ago still holds."""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Any

import zmq

from reactor.core.distributor import DistributorCore
from reactor.errors import ReactorError
from reactor.net.transport import Endpoint, OnMessages, PeerGuard, tune
from reactor.wire import protocol as P


def bind_patiently(sock: zmq.Socket[bytes], address: str, patience: float = 1.0) -> None:
    """Bind, retrying briefly while the port is still held by a socket closed a moment ago
    (libzmq releases a closed listener asynchronously, so a quick restart can find it taken)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            sock.bind(address)
            return
        except zmq.ZMQError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def open_router(
    host: str, port: int, *, max_size: int, curve: Any
) -> tuple[zmq.Socket[bytes], int, Any]:
    """A ROUTER socket bound to ``host:port`` (port 0: a free one), nodes dialing in by name.

    Returns:
        The socket, the port it is bound to, and the CURVE guard (None without ``curve``).

    Raises:
        ReactorError: the address cannot be bound (the message says what to do).
    """
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    tune(sock, max_message_size=max_size)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    guard = None
    try:
        if curve is not None:
            guard = curve.apply_server(sock)
        if port == 0:
            port = sock.bind_to_random_port(f"tcp://{host}")
        else:
            bind_patiently(sock, f"tcp://{host}:{port}")
    except Exception as exc:
        sock.close(linger=0)
        if not isinstance(exc, zmq.ZMQError):
            raise
        raise ReactorError(
            f"cannot bind the distributor to tcp://{host}:{port}: {exc} (another "
            "distributor, or another worker process of the same application, holds it?); "
            "pick another port, or port 0 for a free one (with announce= so nodes find it)"
        ) from exc
    return sock, port, guard


def serve_router(
    loop: asyncio.AbstractEventLoop,
    sock: zmq.Socket[bytes],
    guard: PeerGuard | None,
    core: DistributorCore,
    on_messages: OnMessages,
    max_size: int,
) -> Endpoint:
    """The bound socket on the loop: frames to ``on_messages``, unreachable and revoked peers
    to the core."""
    return Endpoint(
        loop,
        sock,
        P.Codec(max_size),
        on_messages,
        routed=True,
        on_unreachable=lambda peer, _: core.unreachable(peer),
        guard=guard,
        on_revoked=core.revoked,
        name=f"distributor {core.address}",
    )
