"""A node's connection to one distributor: hello, heartbeats, and feedback kept until acked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from reactor import protocol as P
from reactor.transport import Endpoint, Peer, tune

log = logging.getLogger("reactor.node")

#: Feedback kept for a distributor that does not acknowledge it, before the oldest is dropped.
MAX_UNACKED_FEEDBACK = 200_000


def parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """``"host:port"`` or ``(host, port)`` as a (host, port) pair.

    Raises:
        ValueError: the address has no valid port.
    """
    if isinstance(address, tuple):
        host, port = address
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"distributor address {address!r} must look like HOST:PORT")
        port = int(port_text)
    if not 0 < int(port) < 65536:
        raise ValueError(f"distributor port {port} is out of range")
    return host.strip("[]"), int(port)


class Link:
    """One DEALER socket to one distributor, with the node's name as its routing id.

    ZeroMQ reconnects by itself; the link says hello until welcomed, and again whenever the
    distributor goes quiet or asks for it, then re-sends every unacknowledged feedback.
    """

    def __init__(
        self,
        key: str,
        on_messages: Callable[[Link, list[P.Message]], None],
        hello: Callable[[], P.Hello],
        *,
        curve: Any = None,
    ) -> None:
        self.key = key  # "host:port", as stored with each job
        self._on_messages = on_messages
        self._hello = hello
        self._curve = curve
        self.endpoint: Endpoint | None = None
        self.welcomed = False
        self.distributor_session = ""
        self.last_seen = 0.0
        self.feedback: dict[tuple[str, int], list[Any]] = {}

    def open(self, loop: asyncio.AbstractEventLoop, node_name: str, max_message_size: int) -> None:
        """Create the socket and dial the distributor (which need not be up yet)."""
        host, port = parse_address(self.key)
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        tune(sock, max_message_size=max_message_size)
        sock.setsockopt(zmq.IDENTITY, node_name.encode())
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
        self.say_hello()

    def _deliver(self, peer: Peer, messages: list[P.Message]) -> None:
        self.last_seen = time.monotonic()
        self._on_messages(self, messages)

    def send(self, message: P.Message | list[Any]) -> None:
        """Queue a message to the distributor."""
        if self.endpoint is not None:
            self.endpoint.send(None, message)

    def say_hello(self) -> None:
        """Introduce the node (again)."""
        self.send(self._hello())

    def welcome(self, msg: P.Welcome) -> None:
        """The distributor accepted us: re-send what it has not acknowledged."""
        if msg.session != self.distributor_session:
            if self.distributor_session:
                log.info(
                    "distributor %s restarted; re-sending %d feedbacks",
                    self.key,
                    len(self.feedback),
                )
            self.distributor_session = msg.session
        if not self.welcomed:
            log.info("connected to distributor %s", self.key)
        self.welcomed = True
        for message in self.feedback.values():
            self.send(message)

    def send_feedback(self, job_id: str, seq: int, message: list[Any]) -> None:
        """Send a feedback and keep it until the distributor acknowledges it."""
        if len(self.feedback) >= MAX_UNACKED_FEEDBACK:
            oldest = next(iter(self.feedback))
            del self.feedback[oldest]
            log.error(
                "distributor %s has not acknowledged %d feedbacks; dropping the oldest (%s)",
                self.key,
                MAX_UNACKED_FEEDBACK,
                oldest[0],
            )
        self.feedback[(job_id, seq)] = message
        if self.welcomed:
            self.send(message)

    def acked(self, items: list[tuple[str, int]]) -> None:
        """Forget acknowledged feedback."""
        feedback = self.feedback
        for item in items:
            feedback.pop(item, None)

    def beat(self, session: str, accepting: bool, timeout: float) -> None:
        """Called every heartbeat interval: heartbeat, or hello while not welcomed."""
        if self.welcomed and time.monotonic() - self.last_seen > timeout:
            log.warning(
                "distributor %s silent for %.1fs; saying hello again",
                self.key,
                time.monotonic() - self.last_seen,
            )
            self.welcomed = False
        if self.welcomed:
            self.send(P.Heartbeat(session, accepting))
        else:
            self.say_hello()

    def close(self) -> None:
        """Close the socket."""
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
