"""Monitors of ZeroMQ sockets, and the redialer of connections libzmq gives up on.

Split from :mod:`reactor.net.transport`, which owns the sockets: this module only watches a
socket's connection events (a monitor socket per watched socket) and dials again when needed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("reactor.transport")

_monitor_ids = itertools.count()


def open_monitor(sock: zmq.Socket[Any], events: int) -> zmq.Socket[Any]:
    """A PAIR socket receiving ``sock``'s ``events``; close it with :func:`close_monitor`.

    libzmq's I/O thread blocks, freezing every socket of the context, when it cannot hand a
    monitor event over. So the reader takes any number of events (RCVHWM 0: a flood of
    connections cannot fill it before it is drained) and is closed only after the monitor is off.
    """
    address = f"inproc://reactor-monitor-{os.getpid()}-{next(_monitor_ids)}"
    sock.monitor(address, events)
    reader: zmq.Socket[Any] = sock.context.socket(zmq.PAIR)
    reader.linger = 0
    reader.rcvhwm = 0
    reader.connect(address)
    return reader


def close_monitor(sock: zmq.Socket[Any], reader: zmq.Socket[Any]) -> None:
    """Stop monitoring ``sock`` (if it is still open), then close the reader."""
    if reader.closed:
        return
    with contextlib.suppress(zmq.ZMQError):
        sock.disable_monitor()
    reader.close(linger=0)


class Redialer:
    """Dials a connecting socket's address again when libzmq will not.

    libzmq does not reconnect after a protocol error (garbage instead of a greeting, a frame over
    MAXMSGSIZE, a refused CURVE handshake): the connection is dropped for good. Anyone able to
    answer on the distributor's address once (on the path, or on the port while the distributor
    restarts) would cut a node off until it restarts. A disconnect that libzmq does not follow
    with a retry of its own is redialed here, after a delay that doubles up to 5 s while the
    peer stays silent.

    With ``silence`` (CURVE clients), a connection that completed its handshake but brought
    nothing in ``silence`` seconds is redialed too: a CURVE distributor does not let a second
    connection take over a node's name, so a node reconnecting before its old connection is
    torn down would otherwise wait forever.
    """

    EVENTS = (
        zmq.EVENT_CONNECTED
        | zmq.EVENT_CONNECT_DELAYED
        | zmq.EVENT_CONNECT_RETRIED
        | zmq.EVENT_DISCONNECTED
        | zmq.EVENT_HANDSHAKE_SUCCEEDED
    )
    FIRST_DELAY = 0.5
    MAX_DELAY = 5.0

    def __init__(self, sock: zmq.Socket[Any], address: str, *, silence: float = 0.0) -> None:
        self.address = address
        self.silence = silence
        self.delay = self.FIRST_DELAY
        self.due = 0.0  # when to redial a connection libzmq gave up on
        self.quiet_since = 0.0  # handshake done, nothing heard since
        self.monitor = open_monitor(sock, self.EVENTS)

    def heard(self) -> None:
        """A frame arrived: the connection works."""
        self.quiet_since = 0.0
        self.delay = self.FIRST_DELAY

    def poll(self, sock: zmq.Socket[Any], name: str) -> None:
        monitor = self.monitor
        now = time.monotonic()
        while int(monitor.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            except zmq.ZMQError:
                break
            if event == zmq.EVENT_DISCONNECTED:
                self.due = now + self.delay
                self.quiet_since = 0.0
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.quiet_since = now if self.silence else 0.0
            else:  # libzmq is (re)connecting by itself
                self.due = 0.0
        if self.due and now >= self.due:
            self.delay = min(self.delay * 2, self.MAX_DELAY)
            self._redial(sock, name, "the connection was dropped on a protocol error")
        elif self.quiet_since and now - self.quiet_since > self.silence:
            self._redial(sock, name, f"no answer {self.silence:.0f}s after connecting")

    def _redial(self, sock: zmq.Socket[Any], name: str, why: str) -> None:
        self.due = self.quiet_since = 0.0
        log.warning("%s: %s; dialing again", name, why)
        with contextlib.suppress(zmq.ZMQError):  # libzmq may have forgotten it already
            sock.disconnect(self.address)
        sock.connect(self.address)

    def close(self, sock: zmq.Socket[Any]) -> None:
        close_monitor(sock, self.monitor)


#: Seconds a CURVE client waits for a first frame on a new connection before redialing.
CURVE_SILENCE = 5.0
