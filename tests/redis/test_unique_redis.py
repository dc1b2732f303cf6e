"""Unique jobs across two distributors that share a real redis-server (and on a Cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from reactor import Config, Distributor, Node, ReactorError
from reactor.distributor.handle import JobHandle
from reactor.distributor.unique import KEY_PREFIX, ForeignJobHandle, UniqueKeys
from reactor.testing import registry_from

from .conftest import async_wait_until

pytestmark = pytest.mark.redis

RUNS: list[int] = []


def charge(args: dict[str, Any]) -> None:
    RUNS.append(args["invoice"])
    args["charged"] = True


@contextlib.asynccontextmanager
async def two_distributors_and_a_node(
    **stores: str,
) -> AsyncIterator[tuple[Distributor, Distributor]]:
    """Two distributors sharing ``stores`` (``unique_store=``, ``result_store=``) and one node
    serving both, running ``charge``."""
    config = Config(heartbeat_interval=0.2, log_job_processing=False)
    async with (
        Distributor("127.0.0.1", 0, config=config, **stores) as d1,
        Distributor("127.0.0.1", 0, config=config, **stores) as d2,
        Node(
            "w1",
            distributors=[d1.address, d2.address],
            registry=registry_from([charge]),
            config=config,
        ),
    ):
        yield d1, d2


async def test_two_distributors_sharing_a_redis_run_one_job_per_key_and_window(
    redis_url: str,
) -> None:
    RUNS.clear()
    async with two_distributors_and_a_node(unique_store=redis_url) as (d1, d2):
        first = d1.enqueue("charge", {"invoice": 1}, unique_key="invoice:1", unique_for=0.5)
        again = d2.enqueue("charge", {"invoice": 1}, unique_key="invoice:1", unique_for=0.5)
        local = d1.enqueue("charge", {"invoice": 1}, unique_key="invoice:1", unique_for=0.5)
        assert isinstance(again, ForeignJobHandle) and again.id == first.id
        assert local is first
        with pytest.raises(ReactorError, match="another distributor.*result store"):
            again.result(timeout=1)
        assert (await asyncio.wait_for(first, 10))["charged"] is True
        client = redis.Redis.from_url(redis_url)
        assert client.get(f"{KEY_PREFIX}{{invoice:1}}") == first.id.encode()
        # The window ends: the key expires in Redis, and the next enqueue is a new job.
        await async_wait_until(lambda: not client.exists(f"{KEY_PREFIX}{{invoice:1}}"), 10)
        fresh = d2.enqueue("charge", {"invoice": 1}, unique_key="invoice:1", unique_for=30)
        assert not isinstance(fresh, ForeignJobHandle) and fresh.id != first.id
        assert (await asyncio.wait_for(fresh, 10))["charged"] is True
        client.close()
    assert RUNS == [1, 1]


def test_threads_of_two_distributors_race_on_one_key_and_one_wins(redis_url: str) -> None:
    owners = [object(), object()]
    stores = [UniqueKeys(redis_url), UniqueKeys(redis_url)]
    won: list[JobHandle] = []
    start = threading.Barrier(4)
    lock = threading.Lock()

    def claim(n: int) -> None:
        store = stores[n % 2]
        mine = JobHandle(f"job-{n}", "charge", owners[n % 2], threading.Lock())  # type: ignore[arg-type]
        start.wait()
        got = store.claim("k", 30.0, mine, lambda i: ForeignJobHandle(i, "charge", "k", None))
        if got is mine:
            with lock:
                won.append(mine)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(won) == 1
    for store in stores:
        store.close()


def test_the_claim_works_on_a_redis_cluster(redis_cluster_url: str) -> None:
    keys = UniqueKeys(redis_cluster_url)
    other = UniqueKeys(redis_cluster_url)
    first = JobHandle("first", "j", None, threading.Lock())  # type: ignore[arg-type]
    second = JobHandle("second", "j", None, threading.Lock())  # type: ignore[arg-type]
    assert keys.claim("order:9", 30.0, first, lambda i: first) is first
    got = other.claim("order:9", 30.0, second, lambda i: ForeignJobHandle(i, "j", "order:9", None))
    assert isinstance(got, ForeignJobHandle) and got.id == "first"
    keys.close()
    other.close()


async def test_a_foreign_handle_reads_the_outcome_from_a_shared_result_store(
    redis_url: str,
) -> None:
    RUNS.clear()
    shared = {"unique_store": redis_url, "result_store": redis_url}
    async with two_distributors_and_a_node(**shared) as (d1, d2):
        first = d1.enqueue("charge", {"invoice": 7}, unique_key="invoice:7", unique_for=30)
        again = d2.enqueue("charge", {"invoice": 7}, unique_key="invoice:7", unique_for=30)
        assert isinstance(again, ForeignJobHandle) and again.id == first.id
        assert (await asyncio.wait_for(first, 10))["charged"] is True
        loop = asyncio.get_running_loop()
        foreign = await loop.run_in_executor(None, again.result, 10)
        assert foreign == {"invoice": 7, "charged": True}
        with pytest.raises(ReactorError, match="await"):
            again.result(timeout=1)  # on a running loop: refused, not blocked
    assert RUNS == [7]
