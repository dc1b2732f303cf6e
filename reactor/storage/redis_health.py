"""Whether Redis takes a node's writes, with hysteresis, and the reconnect loop that decides it.

Once Redis is declared down, it is declared back only after ``stable_probes`` consecutive write
probes succeeded ``stable_interval`` seconds apart, so a Redis that answers one command and
refuses the next (a failover in progress, memory at the limit) does not make the node flap
between taking and refusing jobs. Probes back off with redis-py's ``Retry`` and
``ExponentialWithJitterBackoff``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reactor.storage.redis_batch import Client
from reactor.storage.redis_errors import AUTH, classify, describe
from reactor.storage.redis_layout import SCRIPTS, index_key, job_node_key, nodes_key, probe_key

log = logging.getLogger("reactor.storage")

Probe = Callable[[], Awaitable[None]]


class Backoff(ExponentialWithJitterBackoff):
    """redis-py's jittered exponential backoff, safe for outages of any length.

    The parent computes ``base * 2**failures`` before capping, which overflows a float after
    about a thousand failures (an hour-long outage); the exponent is clamped first.
    """

    def compute(self, failures: int) -> float:
        return super().compute(min(failures, 32))


class Availability:
    """Up or down for one RedisStorage; made in ``start()`` (it holds loop-bound objects).

    Args:
        shown_url: the URL without its password, for log lines.
        probe: one write round trip that raises a ``RedisError`` when Redis refuses it.
        retry_base: the backoff's base delay in seconds.
        retry_cap: the longest delay between two probes.
        stable_probes: consecutive successful probes needed to declare Redis back.
        stable_interval: seconds between those probes.
    """

    def __init__(
        self,
        *,
        shown_url: str,
        probe: Probe,
        retry_base: float,
        retry_cap: float,
        stable_probes: int,
        stable_interval: float,
    ) -> None:
        self._shown_url = shown_url
        self._probe = probe
        self._base, self._cap = retry_base, retry_cap
        self._stable_probes = max(1, stable_probes)
        self._stable_interval = stable_interval
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: How many times Redis went from available to unavailable (for tests and metrics).
        self.outages = 0

    @property
    def up(self) -> bool:
        """True while Redis is believed to take writes."""
        return self._up.is_set()

    async def wait(self) -> None:
        """Return once Redis is declared available."""
        await self._up.wait()

    def _retry(self) -> Retry:
        backoff = Backoff(cap=self._cap, base=self._base)
        return Retry(backoff, -1, supported_errors=(RedisError,))

    async def connect(self) -> None:
        """Probe until Redis takes a write (once is enough: there is nothing to flap from).

        Raises:
            RedisError: an authentication or permission error, at once (never retried).
            asyncio.CancelledError: promptly, when the caller is cancelled.
        """
        failures = 0

        async def failed(exc: Exception) -> None:
            nonlocal failures
            failures += 1
            self._log_failure(exc, failures)

        await self._retry().call_with_retry(
            self._probe, failed, is_retryable=lambda exc: classify(exc, starting=True) != AUTH
        )
        if failures:
            log.info("Redis at %s is reachable", self._shown_url)
        self._up.set()

    def mark_down(self, exc: BaseException, pending: int) -> None:
        """Declare Redis unavailable (once per outage) and start probing for its return."""
        if self._up.is_set():
            self._up.clear()
            self.outages += 1
            log.error(
                "Redis at %s is unavailable (%s); refusing new jobs and keeping %d job writes "
                "until it is back",
                self._shown_url,
                describe(exc),
                pending,
            )
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._recover(), name="reactor-redis-reconnect")

    async def _recover(self) -> None:
        failures = 0

        async def failed(exc: Exception) -> None:
            nonlocal failures
            failures += 1
            self._log_failure(exc, failures)

        async def stably() -> None:
            for i in range(self._stable_probes):
                if i:
                    await asyncio.sleep(self._stable_interval)
                await self._probe()

        while True:
            try:
                await self._retry().call_with_retry(stably, failed)
                break
            except Exception:  # a client bug must not leave the storage down for good
                log.exception("probing Redis at %s failed unexpectedly", self._shown_url)
                await asyncio.sleep(self._cap)
        log.info("Redis at %s takes writes again", self._shown_url)
        self._up.set()

    def _log_failure(self, exc: BaseException, failures: int) -> None:
        if failures > 10 and failures % 10:
            return  # a long outage: every tenth failure is enough
        unreachable = isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError))
        what = "cannot reach Redis at" if unreachable else "Redis refuses writes at"
        log.warning(
            "%s %s (%s); retrying (failure %d)", what, self._shown_url, describe(exc), failures
        )

    async def close(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._up.clear()


async def check_eviction(client: Client, shown_url: str) -> None:
    """Warn loudly when Redis may evict job keys; warn that it could not check if CONFIG fails.

    Job keys have no TTL, so ``volatile-*`` policies never evict them (they act like
    ``noeviction`` for jobs: writes fail with OOM, which makes the storage unavailable); only
    ``allkeys-*`` (and any policy this code does not know) can make stored jobs vanish.
    """
    try:
        reply = await client.config_get("maxmemory-policy")
    except (RedisError, OSError) as exc:
        log.warning(
            "could not check Redis's maxmemory-policy at %s (%s): if Redis evicts keys, stored "
            "jobs may vanish; make sure it is 'noeviction'",
            shown_url,
            describe(exc),
        )
        return
    values = {_text(k): _text(v) for k, v in reply.items()}
    policy = values.get("maxmemory-policy", "")
    if policy and policy != "noeviction" and not policy.startswith("volatile-"):
        log.warning(
            "Redis at %s has maxmemory-policy %r: at maxmemory it EVICTS keys, so stored jobs "
            "may VANISH (each reported as lost). For job storage set 'maxmemory-policy "
            "noeviction' (CONFIG SET and redis.conf)",
            shown_url,
            policy,
        )


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def probe_writes(client: Client, prefix: str, node: str) -> None:
    """One write round trip, which also reloads the scripts a restarted Redis forgot.

    Raises:
        RedisError: Redis refused (READONLY, OOM, NOPERM, ...), or one of the shared index keys
            holds the wrong type (no batch could be written: a human must fix it). Socket and
            Cluster-client failures are raised as redis ``ConnectionError`` so they are retried.
    """
    shared = {index_key(prefix, node): b"set", job_node_key(prefix): b"hash"}
    shared[nodes_key(prefix)] = b"set"
    try:
        pipe = client.pipeline(transaction=False)
        probe = probe_key(prefix, node)
        pipe.set(probe, b"1", px=2000)  # refused by a replica (READONLY), OOM, an ACL
        pipe.delete(probe)
        for key in shared:
            pipe.type(key)
        replies = await pipe.execute()
        for body in SCRIPTS.values():  # to every primary of a Cluster
            await client.script_load(body)
    except (OSError, RedisClusterException) as exc:  # not RedisErrors: make them retryable
        raise RedisConnectionError(describe(exc)) from exc
    for (key, wanted), found in zip(shared.items(), replies[-len(shared) :], strict=True):
        if found not in (wanted, b"none", wanted.decode(), "none"):
            raise ResponseError(
                f"WRONGTYPE key {key} holds a {found!r}, not a {wanted.decode()}: "
                "rename or delete it"
            )
