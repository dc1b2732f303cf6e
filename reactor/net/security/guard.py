"""Binds each connected node's routing id (its claimed name) to the CURVE key it proved."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
import zmq.auth
from zmq.utils.monitor import parse_monitor_message

from reactor.net import redial
from reactor.net.security.keys import MAX_REFUSALS_TRACKED
from reactor.wire.protocol import MAX_NAME_LEN

if TYPE_CHECKING:
    from reactor.net.security import CurveServer

log = logging.getLogger("reactor.security")


class Guard:
    """Binds a ROUTER socket's peers to their CURVE keys, frame by frame.

    ZAP sees a connection's key but not the routing id the node claims, so the binding is checked
    on every frame: its ``User-Id`` (the z85 key, set by the ZAP reply) must be allowed to use the
    frame's routing id. A peer is sent to only while its latest frame passed, on a connection that
    is still up (a disconnect of that connection unbinds it before anything else can take the id).
    """

    def __init__(self, server: CurveServer, sock: zmq.Socket[Any]) -> None:
        self._server = server
        self._sock = sock
        self._monitor = redial.open_monitor(sock, zmq.EVENT_DISCONNECTED)
        self._bound: dict[bytes, tuple[int, str, str]] = {}  # peer -> (fd, key, name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: Callable[[bytes], None] | None = None
        self._refusals: dict[tuple[bytes, str], int] = {}
        self._closed = False

    # Called by transport.Endpoint, on the loop's thread.

    def bind(self, loop: asyncio.AbstractEventLoop, kick: Callable[[bytes], None]) -> None:
        """Remember the endpoint's loop and how to drop a peer from it."""
        self._loop = loop
        self._kick = kick

    def poll(self) -> None:
        """Unbind the peers of connections that closed (before reading or sending anything)."""
        monitor = self._monitor
        if self._closed or not int(monitor.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            return
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                fd = int(event["value"])
                for peer, (peer_fd, _, _) in list(self._bound.items()):
                    if peer_fd == fd:
                        del self._bound[peer]
                        self._drop(peer)

    def admit(self, peer: bytes, frame: zmq.Frame) -> bool:
        """Whether this frame's CURVE key may speak as ``peer``; binds the peer when it may."""
        try:
            key = str(frame.get("User-Id"))
        except zmq.ZMQError:
            key = ""
        try:
            fd = int(frame.get(zmq.SRCFD))
        except zmq.ZMQError:
            fd = -1
        try:
            name = peer.decode().partition("/")[0]  # a routing id is name/session
        except UnicodeDecodeError:
            name = ""
        names = self._server.allow_list.get(key)
        if names is None or name not in names:
            self._refuse(peer, key, names)
            if self._bound.pop(peer, None) is not None:
                self._drop(peer)
            return False
        self._bound[peer] = (fd, key, name)
        return True

    def may_send(self, peer: bytes) -> bool:
        """Whether ``peer`` is bound to a key that is still allowed to use its name."""
        bound = self._bound.get(peer)
        if bound is None:
            return False
        names = self._server.allow_list.get(bound[1])
        return names is not None and bound[2] in names

    # Called by the server.

    def revoke(self) -> None:
        """Drop every bound peer whose key lost its name (after a reload); any thread."""
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to drop
            loop.call_soon_threadsafe(self._revoke_now)

    def _revoke_now(self) -> None:
        for peer in list(self._bound):
            if not self.may_send(peer):
                _, key, name = self._bound.pop(peer)
                log.warning(
                    "node %s: its CURVE key %s is no longer in the allow-list; it gets no more "
                    "jobs and its messages are dropped",
                    name,
                    key,
                )
                self._drop(peer, now=True)

    def _drop(self, peer: bytes, *, now: bool = False) -> None:
        if self._kick is None or self._loop is None or self._closed:
            return
        if now:
            self._kick(peer)
        else:  # not from inside the endpoint's read or flush: let it finish first
            self._loop.call_soon(self._kick, peer)

    def _refuse(self, peer: bytes, key: str, names: frozenset[str] | None) -> None:
        marker = (peer[:MAX_NAME_LEN], key)
        count = self._refusals.get(marker, 0) + 1
        if count == 1 and len(self._refusals) >= MAX_REFUSALS_TRACKED:
            self._refusals.clear()
        self._refusals[marker] = count
        if count == 1 or count % 1000 == 0:
            if names is None:
                why = "its key is not (or no longer) in the allow-list"
            else:
                why = f"its key may only be used by {', '.join(sorted(names))}"
            log.warning(
                "refused %d messages from a peer calling itself %r (CURVE key %s): %s",
                count,
                peer[:80],
                key or "?",
                why,
            )

    def close(self) -> None:
        """Stop watching the socket (the endpoint calls this before closing it)."""
        self._closed = True
        self._bound.clear()
        redial.close_monitor(self._sock, self._monitor)
