"""RedisGate (issue 20): slots and rate windows in Redis, on one Redis and a Cluster (every key
in one hash slot), leases that lapse, and an outage that makes jobs wait, never run or vanish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from reactor import Distributor
from reactor.core.limits import Denied, Verdict
from reactor.jobs.limits import SLOT, START, Claim
from reactor.storage.client import SyncClient, make_sync_client
from reactor.storage.limits import OUTAGE_RETRY, RELEASED, SLOT_POLL, RedisGate, limit_key
from reactor.testing import async_wait_until, free_port

from ..conftest import NodeFactory, lines, scrape, value, wait_for_node
from .conftest import ServerFactory

pytestmark = pytest.mark.redis

#: Published on the release channel to learn that the gate's listener hears it (no claim's key).
PROBE = "probe:listening"


class _Answers:
    """Stands in for a node's Limits: collects the gate's answers by job id."""

    def __init__(self) -> None:
        self.got: dict[str, Verdict] = {}
        self.heard: list[str] = []
        self.probed = False  # heard a probe (see _listening)

    def answered(self, job_id: str, verdict: Verdict, now: float) -> None:
        self.got[job_id] = verdict

    def released(self, key: str) -> None:
        if key == PROBE:
            self.probed = True
        else:
            self.heard.append(key)


class _Gate:
    def __init__(self, url: str, lease: float = 2.0) -> None:
        self.tasks: list[asyncio.Task[Any]] = []
        self.gate = RedisGate(url, lease=lease, spawn=self.spawn)
        self.answers = _Answers()
        self.gate.attach(self.answers)  # type: ignore[arg-type]
        self.listener = self.tasks.pop()  # hears releases until close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def ask(self, job_id: str, claims: list[Claim]) -> Verdict:
        self.gate.acquire(f"n/s/{job_id}", claims, 0.0)
        await asyncio.gather(*self.tasks)
        self.tasks.clear()
        return self.answers.got.pop(job_id)

    async def settle(self) -> None:
        await asyncio.gather(*self.tasks)
        self.tasks.clear()

    async def close(self) -> None:
        self.listener.cancel()
        await asyncio.gather(self.listener, return_exceptions=True)
        await self.gate.close()


def _redis_ms(redis: SyncClient) -> float:
    """Now on Redis's clock (the one leases are scored on), in ms."""
    seconds, micros = redis.time()
    return seconds * 1000 + micros // 1000


async def _listening(g: _Gate, redis: SyncClient) -> None:
    """Wait until the gate's listener hears what is published on the release channel (it
    subscribes on its own task): a probe is published until it arrives."""

    def heard() -> bool:
        redis.publish(RELEASED, PROBE)
        return g.answers.probed

    await async_wait_until(heard, 5, interval=0.05, message="the listener never subscribed")


@pytest.fixture(params=["redis", "cluster"])
def limits_url(request: pytest.FixtureRequest) -> str:
    name = "redis_url" if request.param == "redis" else "redis_cluster_url"
    return str(request.getfixturevalue(name))


async def test_slots_are_granted_up_to_the_limit_released_and_lapse(limits_url: str) -> None:
    g = _Gate(limits_url, lease=1.0)
    slot = Claim(SLOT, "tenant", 2, 0)
    assert await g.ask("a", [slot]) is None
    assert await g.ask("b", [slot]) is None
    refused = await g.ask("c", [slot])
    assert isinstance(refused, Denied) and refused.key == "tenant" and refused.retry <= SLOT_POLL
    redis = make_sync_client(limits_url)
    await _listening(g, redis)
    g.gate.release("n/s/a", [slot])
    await g.settle()
    await async_wait_until(lambda: g.answers.heard == ["tenant"], 5)  # the release was published
    assert await g.ask("c", [slot]) is None
    first_lease = redis.zscore(limit_key(slot), "n/s/c")  # ms on Redis's clock; b's ends before
    assert first_lease is not None

    def renewed_past_first_lease() -> bool:
        g.gate.renew([("n/s/c", [slot])], 0.0)  # c's attempt runs on and renews; b's does not
        return _redis_ms(redis) > first_lease

    await async_wait_until(renewed_past_first_lease, 5, interval=0.05)
    await g.settle()
    assert await g.ask("d", [slot]) is None
    assert isinstance(await g.ask("e", [slot]), Denied)  # c's renewals kept its slot
    redis.close()
    await g.close()


async def test_a_rate_window_and_claims_granted_all_or_none(limits_url: str) -> None:
    g = _Gate(limits_url)
    rate = Claim(START, "api", 2, 1)
    slot = Claim(SLOT, "one", 1, 0)
    assert await g.ask("a", [rate, slot]) is None
    refused = await g.ask("b", [rate, slot])
    assert isinstance(refused, Denied) and refused.key == "one"  # the slot is taken
    assert await g.ask("c", [rate]) is None  # b took no start from the window when refused
    refused = await g.ask("d", [rate])
    assert isinstance(refused, Denied) and refused.key == "api" and 0.9 < refused.retry <= 1.1
    await g.close()


async def test_an_unreachable_store_says_wait_never_go() -> None:
    g = _Gate("redis://127.0.0.1:1/0")
    refused = await g.ask("a", [Claim(SLOT, "k", 5, 0)])
    assert refused == Denied("k", OUTAGE_RETRY)
    await g.close()


async def test_jobs_wait_out_a_limits_store_outage_and_none_is_lost(
    distributor: Distributor,
    start_node: NodeFactory,
    make_redis_server: ServerFactory,
    tmp_path: Path,
) -> None:
    store = make_redis_server()
    settings = {"limits_store": store.url, "node_lost_after": 3.0}
    port = free_port()
    extra = ["--metrics-port", str(port)]
    node = start_node("w1", [distributor.address], settings=settings, extra=extra)
    await wait_for_node(distributor, "w1", proc=node)
    path = tmp_path / "slots.txt"
    store.stop()
    handles = [
        distributor.enqueue("flow_slot", {"path": str(path), "tag": f"j{i}"}) for i in range(10)
    ]
    waiting = 'reactor_limit_waiting{job_name="flow_slot",limit="concurrency"}'
    await async_wait_until(lambda: value(scrape(port), waiting) == 10, 10, 0.05)
    assert lines(path) == [], "a job with a limit ran while its limits store was down"
    # The assertion's window, not a wait: the asker asks again every OUTAGE_RETRY, and each
    # answer while the store is down must be "wait" too.
    await asyncio.sleep(OUTAGE_RETRY * 1.5)
    assert lines(path) == [], "a job with a limit ran while its limits store was down"
    assert value(scrape(port), waiting) == 10
    store.restart()  # the same port
    began = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*handles), 30)
    assert len([x for x in lines(path) if x.startswith("start")]) == 10
    await async_wait_until(lambda: "unavailable" in node.output(), 5)
    assert time.monotonic() - began < 20
