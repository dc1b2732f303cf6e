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
from reactor.storage.limits import OUTAGE_RETRY, SLOT_POLL, RedisGate
from reactor.testing import async_wait_until

from ..conftest import NodeFactory, lines, wait_for_node
from .conftest import ServerFactory

pytestmark = pytest.mark.redis


class _Answers:
    """Stands in for a node's Limits: collects the gate's answers by job id."""

    def __init__(self) -> None:
        self.got: dict[str, Verdict] = {}
        self.heard: list[str] = []

    def answered(self, job_id: str, verdict: Verdict, now: float) -> None:
        self.got[job_id] = verdict

    def released(self, key: str) -> None:
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
    await asyncio.sleep(0.2)  # the listener subscribed
    g.gate.release("n/s/a", [slot])
    await g.settle()
    await async_wait_until(lambda: g.answers.heard == ["tenant"], 5)  # the release was published
    assert await g.ask("c", [slot]) is None
    g.gate.renew([("n/s/c", [slot])], 0.0)  # c renews, b does not: only b's lease lapses
    await asyncio.sleep(0.6)
    g.gate.renew([("n/s/c", [slot])], 0.0)
    await asyncio.sleep(0.6)
    await g.settle()
    assert await g.ask("d", [slot]) is None
    assert isinstance(await g.ask("e", [slot]), Denied)
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
    node = start_node("w1", [distributor.address], settings=settings)
    await wait_for_node(distributor, "w1", proc=node)
    path = tmp_path / "slots.txt"
    store.stop()
    handles = [
        distributor.enqueue("flow_slot", {"path": str(path), "tag": f"j{i}"}) for i in range(10)
    ]
    await asyncio.sleep(2.0)
    assert lines(path) == [], "a job with a limit ran while its limits store was down"
    store.restart()  # the same port
    began = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*handles), 30)
    assert len([x for x in lines(path) if x.startswith("start")]) == 10
    await async_wait_until(lambda: "unavailable" in node.output(), 5)
    assert time.monotonic() - began < 20
