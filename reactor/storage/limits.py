"""RedisGate: concurrency slots and rate windows in Redis, shared by every node using the same
``limits_store`` (issue 20).

One Lua script grants a job's claims all at once or none, on Redis's clock (``TIME``), so nodes
with skewed clocks agree. A concurrency limit is a sorted set of holders scored by lease expiry:
a holder renews its lease while its attempt runs, and a node that dies stops renewing, so its
slots lapse within ``node_lost_after``. A rate limit is a sorted set of start times (a sliding
log). Every key carries the hash tag ``{reactor:limits}``: one Cluster slot holds them all, so a
script may touch several. A release is published on :data:`RELEASED`, so a node whose job waits
for that slot asks again at once rather than at its timer (the timer stays as a safety net, for a
missed message and for a holder that died). When Redis cannot answer, the gate says "wait"
(never "go"): jobs wait, and none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from reactor.core.gate import window
from reactor.core.limits import PENDING, Denied, Pending
from reactor.jobs.limits import SLOT, Claim
from reactor.storage.client import Client, make_client, pubsub, safe_url

if TYPE_CHECKING:
    from reactor.core.limits import Limits

log = logging.getLogger("reactor.limits")

#: The hash tag of every limits key: one Cluster slot.
PREFIX = "{reactor:limits}"
#: Seconds a job waits before asking again when Redis did not answer.
OUTAGE_RETRY = 1.0
#: The longest a refused slot claim waits before asking again when no release is heard (a
#: release anywhere is published and wakes the waiter at once; this covers a missed message).
SLOT_POLL = 2.0
#: The channel slot releases are published on (the message is the claim's key).
RELEASED = f"{PREFIX}:released"

#: ARGV: lease ms, holder, then (kind, limit, window ms) per KEYS entry. Returns {0, 0} when
#: granted, else {index of the full claim (1-based), ms until asking again may succeed}.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local holder = ARGV[2]
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 * i + 1])
  if ARGV[3 * i] == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= limit then
      local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      return {i, tonumber(first[2]) - now}
    end
  else
    local span = tonumber(ARGV[3 * i + 2])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
    local n = redis.call('ZCARD', key)
    if n >= limit then
      local at = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
      return {i, tonumber(at[2]) + span - now}
    end
  end
end
for i, key in ipairs(KEYS) do
  if ARGV[3 * i] == 'c' then
    redis.call('ZADD', key, now + lease, holder)
    redis.call('PEXPIRE', key, 2 * lease)
  else
    local span = tonumber(ARGV[3 * i + 2])
    redis.call('ZADD', key, now, now .. ':' .. holder)
    redis.call('PEXPIRE', key, 2 * span)
  end
end
return {0, 0}
"""
#: ARGV: the channel, the holder, then the claim key of each KEYS entry: free the holder's slots
#: and publish each freed key.
RELEASE_LUA = """
for i, key in ipairs(KEYS) do
  if redis.call('ZREM', key, ARGV[2]) == 1 then
    redis.call('PUBLISH', ARGV[1], ARGV[i + 2])
  end
end
return #KEYS
"""
#: ARGV: lease ms, then one holder per KEYS entry: extend leases still held (never revive one).
RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', now + lease, ARGV[i + 1]) == 1 then
    redis.call('PEXPIRE', key, 2 * lease)
  end
end
return #KEYS
"""


def limit_key(claim: Claim) -> str:
    """The Redis key of a claim's limit."""
    return f"{PREFIX}:{claim.kind}:{claim.key}"


class RedisGate:
    """A :class:`reactor.core.limits.Gate` over Redis (see the module docstring).

    Args:
        url: the ``limits_store`` Redis URL.
        lease: seconds a slot stays held without a renewal (``node_lost_after``).
        spawn: runs a coroutine on the node's loop (kept and cancelled at the node's close).
    """

    def __init__(
        self, url: str, *, lease: float, spawn: Callable[[Coroutine[Any, Any, Any]], None]
    ) -> None:
        self.url = url
        self.lease = lease
        self.lease_ms = max(1, round(lease * 1000))
        self.spawn = spawn
        self.client: Client | None = None
        self.limits: Limits | None = None
        self._warned_at = -1e18

    def attach(self, limits: Limits) -> None:
        """The node's limits, told each answer and each release heard (from now on)."""
        self.limits = limits
        self.spawn(self._listen())

    async def _listen(self) -> None:
        """Hear slot releases (reconnecting after an outage) and wake their waiters."""
        while True:
            channel = None
            try:
                channel = await pubsub(self._client())
                await channel.subscribe(RELEASED)
                while True:
                    message = await channel.get_message(ignore_subscribe_messages=True, timeout=30)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        key = data.decode() if isinstance(data, bytes) else str(data)
                        if self.limits is not None:
                            self.limits.released(key)
            except (RedisError, OSError) as exc:
                self._warn(exc)
                await asyncio.sleep(OUTAGE_RETRY)
            finally:
                if channel is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await channel.aclose()

    def acquire(self, holder: str, claims: list[Claim], now: float) -> Pending:
        """Ask Redis; the answer reaches :meth:`Limits.answered` (always pending)."""
        job_id = holder.rsplit("/", 1)[-1]
        self.spawn(self._acquire(job_id, holder, claims))
        return PENDING

    async def _acquire(self, job_id: str, holder: str, claims: list[Claim]) -> None:
        keys = [limit_key(c) for c in claims]
        argv: list[Any] = [self.lease_ms, holder]
        for claim in claims:
            argv += [claim.kind, claim.limit, round(window(claim.per) * 1000)]
        try:
            index, wait_ms = await self._client().eval(ACQUIRE_LUA, len(keys), *keys, *argv)
            verdict = None if index == 0 else Denied(claims[index - 1].key, wait_ms / 1000.0)
            if isinstance(verdict, Denied) and claims[index - 1].kind == SLOT:
                verdict = Denied(verdict.key, min(verdict.retry, SLOT_POLL))
        except (RedisError, OSError) as exc:
            self._warn(exc)
            verdict = Denied(claims[0].key, OUTAGE_RETRY)
        if self.limits is not None:
            self.limits.answered(job_id, verdict, time.monotonic())

    def release(self, holder: str, claims: list[Claim]) -> None:
        """Free ``holder``'s slots (if Redis is down, their leases lapse instead)."""
        slots = [c for c in claims if c.kind == SLOT]
        if slots:
            self.spawn(self._release(holder, slots))

    async def _release(self, holder: str, slots: list[Claim]) -> None:
        keys = [limit_key(c) for c in slots]
        try:
            await self._client().eval(
                RELEASE_LUA, len(keys), *keys, RELEASED, holder, *(c.key for c in slots)
            )
        except (RedisError, OSError) as exc:
            self._warn(exc)

    def renew(self, holders: list[tuple[str, list[Claim]]], now: float) -> None:
        """Extend the leases of the slots this node holds."""
        keys: list[str] = []
        names: list[str] = []
        for holder, claims in holders:
            for claim in claims:
                keys.append(limit_key(claim))
                names.append(holder)
        if keys:
            self.spawn(self._renew(keys, names))

    async def _renew(self, keys: list[str], names: list[str]) -> None:
        try:
            await self._client().eval(RENEW_LUA, len(keys), *keys, self.lease_ms, *names)
        except (RedisError, OSError) as exc:
            self._warn(exc)

    def _client(self) -> Client:
        if self.client is None:
            self.client = make_client(self.url)
        return self.client

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 10.0:  # one line per outage, not one per job
            self._warned_at = now
            log.warning(
                "limits store %s unavailable (%s: %s): jobs with limits wait until it is back",
                safe_url(self.url),
                type(exc).__name__,
                exc,
            )

    async def close(self) -> None:
        """Close the Redis connection (held slots lapse with their leases)."""
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()
