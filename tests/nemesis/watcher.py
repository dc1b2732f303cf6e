"""The result store as the nemesis sees it: the kept outcomes, and every one published.

The result store keeps one value per job, so a second, different outcome written over the first
would leave no trace in the key. Every write is also published on the job's ``:ready`` channel
(``reactor.storage.results``), so a pattern subscription sees each of them. A Redis restart
drops the subscription; the watcher subscribes again (what is published meanwhile is missed,
which the final read of the keys covers for the last value).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgpack
import redis
from redis.exceptions import RedisError

from reactor.storage.results import result_key

PATTERN = "reactor:result:*:ready"
#: The stored outcome codes of reactor.storage.results.
STORE_OUTCOMES = {0: "success", 1: "error", 2: "cancelled"}


def read_store(client: redis.Redis, job_ids: list[str]) -> dict[str, str]:
    """The outcomes kept in the result store for ``job_ids`` (``kind:error type``)."""
    found: dict[str, str] = {}
    for i in range(0, len(job_ids), 500):
        chunk = job_ids[i : i + 500]
        for job_id, raw in zip(chunk, client.mget([result_key(j) for j in chunk]), strict=True):
            if raw is not None:
                _, _, outcome, _, error, _ = msgpack.unpackb(raw)
                kind = STORE_OUTCOMES.get(outcome, str(outcome))
                found[job_id] = f"{kind}:{error[0] if error else '-'}"
    return found


def job_of(channel: bytes) -> str:
    """``reactor:result:{<id>}:ready`` -> ``<id>``."""
    text = channel.decode(errors="replace")
    return text[text.index("{") + 1 : text.rindex("}")]


class StoreWatcher:
    """Subscribes in a thread; :attr:`seen` maps job ids to the outcome kinds published."""

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self._connect = connect
        self.seen: dict[str, list[str]] = {}
        self.resubscribed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nemesis-store-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def kinds(self) -> dict[str, list[str]]:
        with self._lock:
            return {k: list(v) for k, v in self.seen.items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (RedisError, OSError):
                self.resubscribed += 1
                self._stop.wait(0.2)

    def _listen(self) -> None:
        with self._connect() as client, client.pubsub() as sub:
            sub.psubscribe(PATTERN)
            while not self._stop.is_set():
                message = sub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is not None and message.get("type") == "pmessage":
                    self._note(message["channel"], message["data"])

    def _note(self, channel: bytes, data: bytes) -> None:
        try:
            outcome = msgpack.unpackb(data)[2]
        except (ValueError, TypeError, IndexError, msgpack.UnpackException):
            outcome = "malformed"
        with self._lock:
            self.seen.setdefault(job_of(channel), []).append(STORE_OUTCOMES.get(outcome, "?"))
