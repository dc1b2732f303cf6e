"""A thin adapter that drives a ZeroMQ socket from an asyncio loop.

Reads drain everything readable per wake-up; writes go to a per-peer outbox flushed once per loop
iteration, so a backlog shares frames while a lone message still leaves at once. Non-blocking
calls are tried first and readiness is awaited only when they would block (four times cheaper
than awaiting every send through zmq.asyncio).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq

from reactor.errors import ProtocolError
from reactor.protocol import Codec, Message

log = logging.getLogger("reactor.transport")

MAX_BATCH = 1024  # messages per frame
MAX_READS_PER_WAKEUP = 256  # frames read before yielding to the loop

Peer = bytes | None  # a ROUTER peer's routing id; None on a DEALER
OnMessages = Callable[[Peer, list[Message]], None]
OnUnreachable = Callable[[bytes, list[Any]], None]


def tune(sock: zmq.Socket[Any], *, max_message_size: int) -> None:
    """The options every reactor socket gets: bounded frames, no linger, quick reconnects."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_size + 1024)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    sock.setsockopt(zmq.HANDSHAKE_IVL, 5000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 10_000)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)


class Endpoint:
    """One socket on the loop: decodes incoming frames and batches outgoing messages per peer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket[Any],
        codec: Codec,
        on_messages: OnMessages,
        *,
        routed: bool,
        on_unreachable: OnUnreachable | None = None,
        name: str = "",
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._codec = codec
        self._on_messages = on_messages
        self._on_unreachable = on_unreachable
        self._routed = routed
        self._name = name
        self._outbox: dict[Peer, list[Any]] = {}
        self._flush_scheduled = False
        self._read_scheduled = False
        self._closed = False
        self.rejected: Counter[str] = Counter()  # frames rejected, per peer
        self._fd: int = sock.getsockopt(zmq.FD)  # type: ignore[assignment]
        loop.add_reader(self._fd, self._on_ready)
        loop.call_soon(self._on_ready)  # the FD is edge-triggered: look once at the start

    @property
    def socket(self) -> zmq.Socket[Any]:
        """The underlying socket (for options, binds and connects)."""
        return self._sock

    def send(self, peer: Peer, message: Message | list[Any]) -> None:
        """Queue a message for ``peer``; it leaves at the end of this loop iteration."""
        box = self._outbox.get(peer)
        if box is None:
            self._outbox[peer] = [message]
        else:
            box.append(message)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def pending(self, peer: Peer) -> int:
        """How many messages wait in the outbox for ``peer``."""
        return len(self._outbox.get(peer, ()))

    def drop_outbox(self, peer: Peer) -> list[Any]:
        """Take back what waits for ``peer`` (it is gone)."""
        return self._outbox.pop(peer, [])

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        blocked = False
        for peer in list(self._outbox):
            box = self._outbox[peer]
            while box:
                chunk = box[:MAX_BATCH]
                try:
                    self._send_chunk(peer, chunk)
                except zmq.Again:
                    blocked = True
                    break
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.EHOSTUNREACH and peer is not None:
                        del self._outbox[peer]
                        if self._on_unreachable is not None:
                            self._on_unreachable(peer, box)
                        box = []
                        break
                    raise
                del box[: len(chunk)]
            if not box:
                self._outbox.pop(peer, None)
        if blocked and not self._flush_scheduled:
            # The FD normally signals when the socket can take more; retry soon in case it does not.
            self._flush_scheduled = True
            self._loop.call_later(0.005, self._flush)
        # Sending may have consumed the FD's edge: look for readable messages now.
        if self._events() & zmq.POLLIN:
            self._schedule_read()

    def _send_chunk(self, peer: Peer, chunk: list[Any]) -> None:
        frame = self._codec.encode(chunk)
        if len(frame) > self._codec.max_message_size:
            if len(chunk) == 1:
                log.error(
                    "%s: dropping a %d-byte message over the %d-byte limit",
                    self._name,
                    len(frame),
                    self._codec.max_message_size,
                )
                return
            half = len(chunk) // 2
            self._send_chunk(peer, chunk[:half])
            self._send_chunk(peer, chunk[half:])
            return
        if peer is None:
            self._sock.send(frame, zmq.NOBLOCK)
        else:
            self._sock.send_multipart((peer, frame), zmq.NOBLOCK)

    def _events(self) -> int:
        return int(self._sock.getsockopt(zmq.EVENTS))

    def _schedule_read(self) -> None:
        if not self._read_scheduled:
            self._read_scheduled = True
            self._loop.call_soon(self._on_ready)

    def _on_ready(self) -> None:
        self._read_scheduled = False
        if self._closed:
            return
        sock = self._sock
        for _ in range(MAX_READS_PER_WAKEUP):
            events = self._events()
            if events & zmq.POLLOUT and self._outbox and not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            if not events & zmq.POLLIN:
                return
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            self._deliver(parts)
            if sock.closed:
                return
        self._schedule_read()  # more to read: let other callbacks run first

    def _deliver(self, parts: list[bytes]) -> None:
        if self._routed:
            if len(parts) != 2:
                self._reject(parts[0] if parts else None, f"{len(parts)} frame parts, expected 2")
                return
            peer: Peer = parts[0]
            frame = parts[1]
        else:
            if len(parts) != 1:
                self._reject(None, f"{len(parts)} frame parts, expected 1")
                return
            peer, frame = None, parts[0]
        try:
            messages, errors = self._codec.decode(frame)
        except ProtocolError as exc:
            self._reject(peer, str(exc))
            return
        for error in errors:
            self._reject(peer, str(error))
        if messages:
            try:
                self._on_messages(peer, messages)
            except Exception:
                log.exception(
                    "%s: handling messages from %r failed; they were dropped", self._name, peer
                )

    def _reject(self, peer: Peer, why: str) -> None:
        key = repr(peer)[:80]
        self.rejected[key] += 1
        count = self.rejected[key]
        if count <= 10 or count % 1000 == 0:
            log.warning(
                "%s: dropped a malformed message from %s (%s); %d so far",
                self._name,
                key,
                why,
                count,
            )

    def close(self) -> None:
        """Stop watching the socket and close it (pending messages are dropped)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._sock.close(linger=0)
