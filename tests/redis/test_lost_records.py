"""Records that vanish without a destroy, end to end (issue 10): eviction under an
``allkeys-lru`` policy and a FLUSHDB with timers pending give ``JobLost`` error feedback, never a
``JobCancelledError``, and the node warns about the evicting policy at start."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reactor import Distributor, JobCancelledError, JobFailed
from reactor.distributor.handle import JobHandle
from reactor.ops.monitor import RedisMonitor
from reactor.testing import async_wait_until

from ..conftest import NodeFactory, wait_for_node
from .conftest import ServerFactory

pytestmark = pytest.mark.redis


async def _outcomes(handles: list[JobHandle], timeout: float) -> dict[str, list[Any]]:
    """Every handle's outcome, sorted into ok, lost (JobLost), cancelled and other."""
    results = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), timeout)
    found: dict[str, list[Any]] = {"ok": [], "lost": [], "cancelled": [], "other": []}
    for result in results:
        if isinstance(result, JobFailed) and result.type_name == "JobLost":
            found["lost"].append(result)
        elif isinstance(result, JobCancelledError):
            found["cancelled"].append(result)
        elif isinstance(result, BaseException):
            found["other"].append(result)
        else:
            found["ok"].append(result)
    return found


async def test_evicted_jobs_give_job_lost_and_the_policy_is_warned_about(
    distributor: Distributor, start_node: NodeFactory, make_redis_server: ServerFactory
) -> None:
    server = make_redis_server(
        extra_args=["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru"]
    )
    node = start_node("w1", [distributor.address], storage=server.url)
    await wait_for_node(distributor, "w1", proc=node)
    assert "EVICTS keys" in node.output(), "no warning about the evicting policy at start"
    handles = [distributor.enqueue("record", {"i": i}, after=4) for i in range(400)]
    with RedisMonitor(server.url) as monitor:
        await async_wait_until(lambda: monitor.counts("w1").get("new", 0) == 400, 10)
    with server.client() as client:  # push Redis past maxmemory: it evicts, job keys too
        pipe = client.pipeline(transaction=False)
        for i in range(12_000):
            pipe.set(f"junk:{i}", b"x" * 1024)
        pipe.execute()
        assert int(client.info("stats")["evicted_keys"]) > 0
    found = await _outcomes(handles, 30)
    assert not found["cancelled"], f"{len(found['cancelled'])} evicted jobs read as cancelled"
    assert not found["other"], found["other"][:3]
    assert found["lost"], "no job was lost: the eviction did not reach the job keys"
    assert len(found["ok"]) + len(found["lost"]) == 400
    assert "vanished from storage without a destroy" in str(found["lost"][0])


async def test_flushdb_with_timers_pending_gives_job_lost_for_each(
    distributor: Distributor, start_node: NodeFactory, redis_url: str
) -> None:
    node = start_node("w1", [distributor.address], storage=redis_url)
    await wait_for_node(distributor, "w1", proc=node)
    handles = [distributor.enqueue("record", {"i": i}, after=3) for i in range(100)]
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(lambda: monitor.counts("w1").get("new", 0) == 100, 10)
        monitor.redis.flushdb()
    found = await _outcomes(handles, 20)
    assert (len(found["lost"]), len(found["cancelled"]), len(found["ok"])) == (100, 0, 0)


async def test_a_corrupt_job_hash_blocks_nothing_and_is_quarantined_at_restart(
    distributor: Distributor, start_node: NodeFactory, redis_url: str
) -> None:
    node = start_node("w1", [distributor.address], storage=redis_url)
    await wait_for_node(distributor, "w1", proc=node)
    victim = distributor.enqueue("record", {}, after=60)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(lambda: victim.id in monitor.jobs_for("w1"), 10)
        key = f"reactor:{{w1}}:job:{victim.id}"
        monitor.redis.delete(key)
        monitor.redis.set(key, "not a hash")  # someone overwrote the job's hash
    others = [distributor.enqueue("record", {"i": i}) for i in range(50)]
    results = await asyncio.wait_for(asyncio.gather(*others), 20)
    assert [r["result"] for r in results] == ["ok"] * 50
    node.kill()
    node = start_node("w1", [distributor.address], storage=redis_url)
    await async_wait_until(lambda: "node w1 started" in node.output(), 15)  # not stopped by it
    assert "quarantined the record of job" in node.output()
    with RedisMonitor(redis_url) as monitor:
        shown = monitor.quarantined("w1")
        assert victim.id in shown and shown[victim.id]["raw"] == "not a hash", shown
    await wait_for_node(distributor, "w1", proc=node)
    after = [distributor.enqueue("record", {"i": i}) for i in range(10)]
    assert len(await asyncio.wait_for(asyncio.gather(*after), 20)) == 10
    victim.cancel()
