"""Keeps a node's heartbeats going while a blocking ``def`` job holds its event loop.

The loop thread owns the sockets and holds :attr:`HeartbeatWatchdog.lock` whenever it may touch
them; it lets go only while it runs ``def`` chains, which never touch a socket. When the loop has
not beaten for longer than the heartbeat interval, the watchdog thread takes the lock (a full
memory barrier, so the sockets may change threads safely), sends a heartbeat on every link, gives
the lock back and asks the loop to look at the sockets again once it is free.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack
import zmq

from reactor import protocol as P

log = logging.getLogger("reactor.node")


class HeartbeatWatchdog:
    """A daemon thread that beats for a node whose loop is busy running a blocking job."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        endpoints: Callable[[], Iterable[Any]],
        beat: Callable[[], tuple[str, bool]],
    ) -> None:
        self.lock = threading.Lock()
        self.loop_beat = time.monotonic()  # the loop's own last heartbeat
        self._loop = loop
        self._interval = interval
        self._endpoints = endpoints
        self._beat = beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reactor-heartbeat", daemon=True)
        self.sent = 0

    def start(self) -> None:
        """Take the lock for the loop thread and start watching."""
        self.lock.acquire()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (the loop thread still holds the lock)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if time.monotonic() - self.loop_beat < 1.5 * self._interval:
                continue
            if not self.lock.acquire(timeout=self._interval / 2):
                continue  # the loop is busy, but not in a job: it will beat itself
            try:
                if self._stop.is_set():
                    return
                session, accepting = self._beat()
                frame = msgpack.packb([[P.HEARTBEAT, session, accepting]])
                endpoints = list(self._endpoints())
                for endpoint in endpoints:
                    try:
                        endpoint.socket.send(frame, zmq.NOBLOCK)
                        self.sent += 1
                    except zmq.ZMQError:
                        pass
            finally:
                self.lock.release()
            for endpoint in endpoints:  # sending may have eaten a read wake-up: look again later
                try:
                    self._loop.call_soon_threadsafe(endpoint._on_ready)
                except RuntimeError:
                    return
