"""A node's view of the announced distributors (``discover=URL``): who to dial, kept current.

Joins and graceful leaves arrive pushed on the discovery channel; each known announcement has a
timer at its lease end, when the follower reads it once more and drops it unless it was renewed.
After a lost subscription the follower subscribes again and re-reads the whole list, so an event
missed meanwhile costs nothing. See :mod:`reactor.storage.discovery` for the keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisClusterException, RedisError

from reactor.storage.client import Client, make_client, safe_url
from reactor.storage.client import pubsub as make_pubsub
from reactor.storage.discovery import (
    PREFIX,
    PRUNE,
    Announcement,
    channel,
    hash_key,
    leases_key,
    list_announcements,
)

log = logging.getLogger("reactor.discovery")

#: Seconds past a lease's end before it is read again (a renewal may be on its way).
SLACK = 0.1
#: Seconds before asking again about a lease Redis could not confirm.
RECHECK = 1.0
_FAILURES = (RedisError, RedisClusterException, OSError)


class Follower:
    """Calls ``join(address)`` for each distributor that appears and ``leave(address)`` for each
    that goes (on the loop that ran :meth:`start`).

    Args:
        url: the Redis URL the distributors announce to.
        join: called with ``host:port`` when the first live session at that address appears.
        leave: called when the last one goes.
    """

    def __init__(
        self,
        url: str,
        *,
        join: Callable[[str], None],
        leave: Callable[[str], None],
        prefix: str = PREFIX,
    ) -> None:
        self.url = url
        self._join = join
        self._leave = leave
        self._prefix = prefix
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()
        #: session -> (address, lease end)
        self.sessions: dict[str, tuple[str, float]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def addresses(self) -> set[str]:
        """The addresses of the live announcements."""
        return {address for address, _ in self.sessions.values()}

    async def start(self) -> None:
        """Subscribe and read the current list; if Redis is down, keep trying in the background."""
        self._client = make_client(self.url)
        pubsub: PubSub | ClusterPubSub | None = None
        try:
            pubsub = await self._subscribe()
        except _FAILURES as exc:
            log.warning(
                "cannot read announced distributors at %s (%s); retrying", safe_url(self.url), exc
            )
            pubsub = None
        self._task = asyncio.get_running_loop().create_task(self._listen(pubsub))

    async def stop(self) -> None:
        """Stop following (the links already made stay until the node closes them)."""
        for task in [self._task, *self._checks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_FAILURES):
                    await task
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _subscribe(self) -> PubSub | ClusterPubSub:
        assert self._client is not None
        pubsub = await make_pubsub(self._client)
        try:
            await pubsub.subscribe(channel(self._prefix))
            await self._resync()
        except BaseException:
            await pubsub.aclose()
            raise
        return pubsub

    async def _listen(self, pubsub: PubSub | ClusterPubSub | None) -> None:
        backoff = ExponentialWithJitterBackoff(cap=5.0, base=0.1)
        failures = 0
        while True:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                    if failures:
                        log.info("following announced distributors at %s again", self.url)
                    failures = 0
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30.0)
                if message is not None and message.get("type") == "message":
                    self._on_event(message["data"])
            except _FAILURES as exc:
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "lost the announcements at %s (%s); resubscribing", safe_url(self.url), exc
                    )
                if pubsub is not None:
                    with contextlib.suppress(*_FAILURES):
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                pubsub = None
                await asyncio.sleep(backoff.compute(failures))
            except asyncio.CancelledError:
                if pubsub is not None:
                    with contextlib.suppress(*_FAILURES):
                        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                raise

    async def _resync(self) -> None:
        assert self._client is not None
        # Sessions missing from the list are left to their lease timers: after a Redis restart
        # that lost the data, live distributors announce themselves again within a heartbeat.
        live = await list_announcements(self._client, prefix=self._prefix)
        for item in live:
            self._add(item.session, item.address, item.lease_until)

    def _on_event(self, raw: bytes | str) -> None:
        try:
            event: dict[str, Any] = json.loads(raw)
            kind, session = event["event"], str(event["session"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed discovery event %r", raw[:200])
            return
        if kind == "up" and session not in self.sessions:
            # Pub/sub channels span a server's databases: read the announcement in ours.
            self._spawn(self._confirm(session))
        elif kind == "down":
            self._drop(session)

    def _add(self, session: str, address: str, lease_until: float) -> None:
        known = self.sessions.get(session)
        if known is None and address not in self.addresses:
            log.info("distributor %s announced (session %s)", address, session)
            self.sessions[session] = (address, lease_until)
            self._join(address)
        else:
            self.sessions[session] = (address, max(lease_until, known[1] if known else 0.0))
        self._arm(session)

    def _drop(self, session: str) -> None:
        known = self.sessions.pop(session, None)
        timer = self._timers.pop(session, None)
        if timer is not None:
            timer.cancel()
        if known is not None and known[0] not in self.addresses:
            log.info("distributor %s withdrawn (session %s)", known[0], session)
            self._leave(known[0])

    def _arm(self, session: str) -> None:
        timer = self._timers.pop(session, None)
        if timer is not None:
            timer.cancel()
        delay = max(0.0, self.sessions[session][1] - time.time()) + SLACK
        loop = asyncio.get_running_loop()
        self._timers[session] = loop.call_later(delay, self._expired, session)

    def _expired(self, session: str) -> None:
        self._timers.pop(session, None)
        self._spawn(self._check(session))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _confirm(self, session: str) -> None:
        """An up event: join the announcement if it is in this database and alive."""
        if self._client is None:
            return
        try:
            raw = await self._client.hget(hash_key(self._prefix), session)
            item = Announcement.from_json(raw) if raw is not None else None
        except _FAILURES as exc:
            log.warning("cannot read announcement %s (%s); the next resync finds it", session, exc)
            return
        except ValueError:
            return
        if item is not None and item.lease_until > time.time():
            self._add(session, item.address, item.lease_until)

    async def _check(self, session: str) -> None:
        """A lease ended: keep the session if it was renewed, else drop (and prune) it."""
        client = self._client
        if client is None or session not in self.sessions:
            return
        try:
            raw = await client.hget(hash_key(self._prefix), session)
            item = Announcement.from_json(raw) if raw is not None else None
            if item is not None and item.lease_until > time.time():
                self._add(session, item.address, item.lease_until)
                return
            await client.eval(
                PRUNE,
                2,
                hash_key(self._prefix),
                leases_key(self._prefix),
                repr(time.time()),
                channel(self._prefix),
            )
        except _FAILURES as exc:
            # Redis unreachable says nothing about the distributor: keep dialing it, ask later.
            log.warning("cannot confirm distributor session %s (%s); asking again", session, exc)
            address = self.sessions[session][0]
            self.sessions[session] = (address, time.time() + RECHECK)
            self._arm(session)
            return
        except ValueError:
            log.warning("distributor session %s has a malformed announcement", session)
        if session in self.sessions:
            log.info("distributor session %s: lease ended without renewal", session)
            self._drop(session)
