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
from typing import Any, Protocol

import zmq

from reactor.errors import ProtocolError
from reactor.net.redial import CURVE_SILENCE, Redialer
from reactor.wire.protocol import Codec, Message

log = logging.getLogger("reactor.transport")

MAX_BATCH = 1024  # messages per frame
MAX_READS_PER_WAKEUP = 256  # frames read before yielding to the loop
MAX_REJECT_PEERS = 1024
FIRST_RETRY = 0.005  # seconds before a blocked send is tried again; doubles up to MAX_RETRY
MAX_RETRY = 0.2  # peers counted one by one in Endpoint.rejected; the rest share a line
GOODBYE_LINGER = 1000  # milliseconds a closing socket's last messages (byes) have to leave

Peer = bytes | None  # a ROUTER peer's routing id; None on a DEALER
OnMessages = Callable[[Peer, list[Message]], None]
#: Takes what it can of messages read off the loop's thread; returns the rest, for the loop.
TakeMessages = Callable[[Peer, list[Message]], list[Message]]
OnUnreachable = Callable[[bytes, list[Any]], None]


class PeerGuard(Protocol):
    """Admits a ROUTER socket's traffic peer by peer (net.security binds names to keys)."""

    def bind(self, loop: asyncio.AbstractEventLoop, kick: Callable[[bytes], None]) -> None:
        """Called once by the endpoint: ``kick(peer)`` drops a peer as unreachable."""

    def poll(self) -> None:
        """Catch up on connection events; called before every read and flush."""

    def admit(self, peer: bytes, frame: zmq.Frame) -> bool:
        """Whether a received frame may be delivered as coming from ``peer``."""
        ...

    def may_send(self, peer: bytes) -> bool:
        """Whether messages may go to ``peer``; if not, the peer is reported unreachable."""
        ...

    def close(self) -> None:
        """Called by the endpoint before it closes the socket."""


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
        guard: PeerGuard | None = None,
        on_revoked: Callable[[bytes], None] | None = None,
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
        self._retry = FIRST_RETRY
        self._read_scheduled = False
        self._later: list[tuple[Peer, list[Message]]] = []  # read by a thread, for the loop
        self._closed = False
        self.rejected: Counter[str] = Counter()  # frames rejected, per peer
        self._guard = guard
        self._on_revoked = on_revoked
        if self._guard is not None:
            self._guard.bind(loop, self._revoked)
        self._redialer: Redialer | None = None
        if not routed:
            address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            if address.startswith("tcp://"):
                curve = sock.getsockopt(zmq.MECHANISM) == zmq.CURVE
                self._redialer = Redialer(sock, address, silence=CURVE_SILENCE if curve else 0.0)
        self._fd = sock.fileno()  # the edge-triggered FD (zmq.FD)
        loop.add_reader(self._fd, self.on_ready)
        loop.call_soon(self.on_ready)  # the FD is edge-triggered: look once at the start

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

    def queue(self, peer: Peer, message: Message | list[Any]) -> None:
        """Queue a message without touching the loop (from a thread holding the socket lock)."""
        box = self._outbox.get(peer)
        if box is None:
            self._outbox[peer] = [message]
        else:
            box.append(message)

    def flush_from_thread(self) -> None:
        """Send what is queued, from a thread that holds the socket lock while the loop is busy.

        Nothing here touches the loop; whatever cannot leave now waits for the loop's own flush,
        which is asked for (thread-safely) together with a look at the socket.
        """
        if self._closed:
            return
        self._send_outbox()
        try:
            self._loop.call_soon_threadsafe(self.on_ready)
            if self._outbox:
                self._loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop closed
            pass

    def _send_outbox(self) -> None:
        """Send what the outbox holds, as far as the socket takes it now."""
        for peer in list(self._outbox):
            box = self._outbox[peer]
            while box:
                chunk = box[:MAX_BATCH]
                try:
                    self._send_chunk(peer, chunk)
                except zmq.ZMQError:
                    break
                del box[: len(chunk)]
            if not box:
                self._outbox.pop(peer, None)

    def read_from_thread(self, take: TakeMessages) -> int:
        """Read every waiting frame of a DEALER socket, from a thread that holds the socket lock
        while the loop is busy (a ``def`` job holds it): ``take`` handles what it can there and
        then, and the rest reaches ``on_messages`` on the loop, first thing and in order.
        Returns how many messages were read. Nothing here touches the loop
        (:meth:`flush_from_thread` asks it to look again)."""
        if self._routed:
            return 0  # only a node's dealer sockets are read this way
        count = 0
        while not self._closed and self._events() & zmq.POLLIN:
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            if len(parts) != 1:
                self._reject(None, f"{len(parts)} frame parts, expected 1")
                continue
            try:
                messages, errors = self._codec.decode(parts[0])
            except ProtocolError as exc:
                self._reject(None, str(exc))
                continue
            for error in errors:
                self._reject(None, str(error))
            count += len(messages)
            rest = take(None, messages)
            if rest:
                self._later.append((None, rest))
        return count

    def pending(self, peer: Peer) -> int:
        """How many messages wait in the outbox for ``peer``."""
        return len(self._outbox.get(peer, ()))

    def drop_outbox(self, peer: Peer) -> list[Any]:
        """Take back what waits for ``peer`` (it is gone)."""
        return self._outbox.pop(peer, [])

    def unreachable(self, peer: bytes) -> None:
        """Treat ``peer`` as gone, as if a send to it had failed."""
        box = self._outbox.pop(peer, [])
        if self._on_unreachable is not None and not self._closed:
            self._on_unreachable(peer, box)

    def _revoked(self, peer: bytes) -> None:
        """The guard no longer admits ``peer`` (its key was revoked)."""
        self._outbox.pop(peer, None)
        if self._on_revoked is not None and not self._closed:
            self._on_revoked(peer)
        else:
            self.unreachable(peer)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        blocked = False
        guard = self._guard
        if guard is not None:
            guard.poll()
        if self._redialer is not None:
            self._redialer.poll(self._sock, self._name)
        for peer in list(self._outbox):
            box = self._outbox[peer]
            if guard is not None and peer is not None and not guard.may_send(peer):
                self.unreachable(peer)
                continue
            while box:
                chunk = box[:MAX_BATCH]
                try:
                    self._send_chunk(peer, chunk)
                except zmq.Again:
                    blocked = True
                    break
                except zmq.ZMQError as exc:
                    box = self._lost_peer(peer, box, exc)
                    break
                del box[: len(chunk)]
            if not box:
                self._outbox.pop(peer, None)
        if blocked:
            self._retry_flush()
        else:
            self._retry = FIRST_RETRY
        # Sending may have consumed the FD's edge: look for readable messages now.
        if self._events() & zmq.POLLIN:
            self._schedule_read()

    def _lost_peer(self, peer: Peer, box: list[Any], exc: zmq.ZMQError) -> list[Any]:
        """A send to ``peer`` failed: an unreachable peer is reported with what waited for it
        (and an empty box comes back); any other failure is raised."""
        if exc.errno != zmq.EHOSTUNREACH or peer is None:
            raise exc
        del self._outbox[peer]
        if self._on_unreachable is not None:
            self._on_unreachable(peer, box)
        return []

    def _retry_flush(self) -> None:
        """The socket took no more: flush again later, backing off while it stays blocked.

        The FD normally signals when the socket can take more; the retry is for when it does not
        (a connection that is down, with IMMEDIATE).
        """
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_later(self._retry, self._flush)
            self._retry = min(self._retry * 2, MAX_RETRY)

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
            self._loop.call_soon(self.on_ready)

    def on_ready(self) -> None:
        """Read what the socket holds (its FD is readable, or the owner looks again)."""
        self._read_scheduled = False
        if self._closed:
            return
        if self._later:
            self._deliver_later()
        sock = self._sock
        guard = self._guard
        if guard is not None:
            guard.poll()
        for _ in range(MAX_READS_PER_WAKEUP):
            events = self._events()
            if events & zmq.POLLOUT and self._outbox and not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            if not events & zmq.POLLIN:
                return
            try:
                if guard is None:
                    parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
                else:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    peer = frames[0].bytes
                    if not guard.admit(peer, frames[-1]):
                        self._reject(peer, "its CURVE key may not use this name")
                        continue
                    parts = [f.bytes for f in frames]
            except zmq.Again:
                return
            if self._redialer is not None:
                self._redialer.heard()
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

    def _deliver_later(self) -> None:
        """Hand the loop what a thread read for it (see :meth:`read_from_thread`)."""
        later, self._later = self._later, []
        for peer, messages in later:
            try:
                self._on_messages(peer, messages)
            except Exception:
                log.exception("%s: handling messages failed; they were dropped", self._name)

    def _reject(self, peer: Peer, why: str) -> None:
        key = repr(peer)[:80]
        if key not in self.rejected and len(self.rejected) >= MAX_REJECT_PEERS:
            key = "<other peers>"  # a flood of new routing ids must not grow this without bound
        self.rejected[key] += 1
        count = self.rejected[key]
        if count <= 10 or count % 1000 == 0:
            log.warning(
                "%s: dropped a message from %s (%s); %d so far",
                self._name,
                key,
                why,
                count,
            )

    def close(self, linger: int = 0) -> None:
        """Stop watching the socket and close it. Queued messages are dropped, or with
        ``linger`` (milliseconds) sent first, with that long to leave (a distributor's byes)."""
        if self._closed:
            return
        if linger:
            self._send_outbox()
        self._closed = True
        self._loop.remove_reader(self._fd)
        # Monitors go first: libzmq must not report the socket's teardown to a closed reader.
        if self._redialer is not None:
            self._redialer.close(self._sock)
        if self._guard is not None:
            self._guard.close()
        self._sock.close(linger=linger)
