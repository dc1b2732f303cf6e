"""Hears the monitor's cancels of the jobs a node keeps in Redis (``reactor monitor cancel``,
the dashboard's Cancel button): a thread subscribed to the node's cancel channel.

A thread rather than a task so that a ``def`` job holding the node's loop is reached too: the
runner then acts for the held loop, under the watchdog's lock, as the watchdog does. The
monitor marks the record before it publishes, so a cancel sent while this node was down (or
while the subscription was being made again) is read when the node resumes its records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from redis.exceptions import RedisError

from reactor.storage.base import Storage
from reactor.storage.client import make_sync_client
from reactor.storage.redis import RedisStorage
from reactor.storage.redis_layout import cancel_channel, safe_url

log = logging.getLogger("reactor.node")

#: Seconds one wait for a message lasts (how soon :meth:`StoredCancels.stop` returns).
WAIT = 0.2
#: Seconds between two attempts to subscribe while Redis is unreachable.
RESUBSCRIBE_AFTER = 1.0


class StoredCancels:
    """A daemon thread that calls ``deliver(job_id)`` for each cancel published for ``node``.

    Args:
        url: the Redis URL of the node's storage.
        channel: the node's cancel channel.
        deliver: called in this thread with each job id (it hands the cancel to the node).
    """

    def __init__(self, url: str, channel: str, deliver: Callable[[str], None]) -> None:
        self.url = url
        self.channel = channel
        self.deliver = deliver
        self.subscribed = threading.Event()  # set while the subscription stands (tests wait)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reactor-cancels", daemon=True)

    @classmethod
    def of(
        cls, storage: Storage, node: str, deliver: Callable[[str], None]
    ) -> StoredCancels | None:
        """The listener for ``storage``'s cancels, or None for a storage the monitor cannot
        reach (memory)."""
        if not isinstance(storage, RedisStorage):
            return None
        return cls(storage.url, cancel_channel(storage.prefix, node), deliver)

    def start(self) -> None:
        """Subscribe (in the thread) and deliver cancels until :meth:`stop`."""
        self._thread.start()

    def stop(self) -> None:
        """Unsubscribe and end the thread."""
        self._stop.set()
        self._thread.join(timeout=5 * WAIT)

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            try:
                self._listen()
                return
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                if not warned:
                    warned = True
                    log.warning(
                        "cannot hear the monitor's cancels on %s (%s: %s); retrying (a cancel "
                        "meanwhile takes effect when the job's record is next read)",
                        safe_url(self.url),
                        type(exc).__name__,
                        exc,
                    )
                self._stop.wait(RESUBSCRIBE_AFTER)

    def _listen(self) -> None:
        client = make_sync_client(self.url, timeout=10.0, detect_cluster=True)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
            self.subscribed.set()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=WAIT)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                    self.deliver(text)
        finally:
            pubsub.close()
            client.close()
