"""A node's socket to one distributor: a DEALER whose routing id is ``name/session``.

Only the socket lives here; what the node knows about the distributor (welcome, lease, sync,
unacknowledged feedback) is :class:`reactor.core.link.LinkState`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import zmq

from reactor.net.transport import Endpoint, Peer, tune
from reactor.wire import protocol as P


def parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` or ``(host, port)`` as a (host, port) pair.

    Raises:
        ValueError: the address has no valid port.
    """
    if isinstance(address, tuple):
        host, port = address
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep or not port_text.isdigit() or not host.strip("[]"):
            raise ValueError(f"distributor address {address!r} must look like HOST:PORT")
        port = int(port_text)
    if not 0 < int(port) < 65536:
        raise ValueError(f"distributor port {port} is out of range")
    return host.strip("[]"), int(port)


class Link:
    """One DEALER socket dialing one distributor; ZeroMQ reconnects by itself.

    ``IMMEDIATE`` keeps messages from piling up in libzmq while the connection is down: they
    wait in the endpoint's outbox instead, where a new hello replaces them (the core re-sends
    whatever matters once it is welcomed again), so a long outage ends without a burst of stale
    hellos and duplicates.
    """

    def __init__(
        self,
        key: str,
        on_messages: Callable[[Link, list[P.Message]], None],
        *,
        curve: Any = None,
    ) -> None:
        self.key = key  # "host:port", as stored with each job
        self._on_messages = on_messages
        self._curve = curve
        self.endpoint: Endpoint | None = None

    def open(self, loop: asyncio.AbstractEventLoop, identity: bytes, max_message_size: int) -> None:
        """Create the socket and dial the distributor (which need not be up yet)."""
        host, port = parse_address(self.key)
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        tune(sock, max_message_size=max_message_size)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        if self._curve is not None:
            self._curve.apply_client(sock)
        sock.connect(f"tcp://{host}:{port}")
        self.endpoint = Endpoint(
            loop,
            sock,
            P.Codec(max_message_size),
            self._deliver,
            routed=False,
            name=f"link to {self.key}",
        )

    def _deliver(self, peer: Peer, messages: list[P.Message]) -> None:
        self._on_messages(self, messages)

    def send(self, message: P.Message | list[Any]) -> None:
        """Queue a message to the distributor; a hello replaces whatever still waits."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        if type(message) is P.Hello:
            endpoint.drop_outbox(None)
        endpoint.send(None, message)

    def close(self) -> None:
        """Close the socket."""
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
