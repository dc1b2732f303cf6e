"""Redis storage on a real 3-master Redis Cluster: the parts the contract suite does not cover.

The contract suite (test_storage_contract.py) also runs on the cluster; these add restarts of
nodes whose keys live on different masters, quarantine, tombstones, and plain ``redis://`` URLs
pointing at a cluster node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from reactor import Distributor
from reactor.jobs.record import QUEUED, JobRecord
from reactor.ops.monitor import RedisMonitor
from reactor.storage.redis import RedisStorage
from reactor.testing import NodeProcess, async_wait_until
from reactor.testing.redis_server import RedisClusterServers
from tests.conftest import NodeFactory, lines, wait_for_node
from tests.redis.conftest import make_job

pytestmark = pytest.mark.redis

Opener = Callable[..., Awaitable[RedisStorage]]


@pytest.fixture
async def open_cluster(redis_cluster_url: str) -> AsyncIterator[Opener]:
    opened: list[RedisStorage] = []

    async def opener(node: str, url: str = redis_cluster_url, **kw: Any) -> RedisStorage:
        storage = RedisStorage(url, retry_base=0.02, retry_cap=0.1, **kw)
        opened.append(storage)
        await storage.start(node)
        return storage

    yield opener
    for storage in opened:
        await storage.close()


@pytest.fixture
def cluster_client(
    redis_cluster: RedisClusterServers, redis_cluster_url: str
) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.servers[0].port)
    yield client
    client.close()


async def test_nodes_on_different_masters_write_and_resume(
    open_cluster: Opener, cluster_client: RedisCluster
) -> None:
    names = ["alpha", "beta", "gamma", "delta"]  # their hash tags spread over the masters
    slots = {cluster_client.keyslot(f"{{{name}}}") for name in names}
    assert len(slots) == len(names)
    stores = {name: await open_cluster(name) for name in names}
    for name, storage in stores.items():
        jobs = [make_job(f"{name}-{i}") for i in range(50)]
        await storage.add(jobs)
        jobs[0].status = QUEUED
        storage.update(jobs[0])
        storage.remove(jobs[1])
        await asyncio.wait_for(storage.flush(), 10)
    for name in names:
        resumed = {j.id: j for j in await (await open_cluster(name)).unfinished()}
        assert len(resumed) == 49 and f"{name}-1" not in resumed
        assert resumed[f"{name}-0"].status == QUEUED
    assert cluster_client.hget("reactor:job-node", "gamma-3") == b"gamma"
    assert cluster_client.smembers("reactor:nodes") == {n.encode() for n in names}


async def test_quarantine_and_tombstones_on_a_cluster(
    open_cluster: Opener, cluster_client: RedisCluster
) -> None:
    storage = await open_cluster("alpha")
    jobs = [make_job("ok"), make_job("bad"), make_job("gone")]
    await storage.add(jobs)
    cluster_client.delete("reactor:{alpha}:job:bad")
    cluster_client.set("reactor:{alpha}:job:bad", "garbage")
    cluster_client.set("reactor:{alpha}:destroyed:gone", "1", ex=60)
    cluster_client.delete("reactor:{alpha}:job:gone")
    assert await storage.tombstoned(jobs) == [False, False, True]
    restarted = await open_cluster("alpha")
    found: list[tuple[JobRecord | None, str, str]] = []
    restarted.on_poisoned = lambda record, job_id, why: found.append((record, job_id, why))
    assert [j.id for j in await restarted.unfinished()] == ["ok"]
    assert [job_id for _r, job_id, _w in found] == ["bad"]
    assert cluster_client.get("reactor:{alpha}:quarantined:bad") == b"garbage"
    assert cluster_client.hget("reactor:job-node", "bad") is None


async def test_a_plain_url_to_any_cluster_node_is_detected(
    open_cluster: Opener, redis_cluster: RedisClusterServers
) -> None:
    for server in redis_cluster.servers:  # whichever master owns the node's slot, or not
        storage = await open_cluster("beta", url=f"redis://127.0.0.1:{server.port}/0")
        assert storage.cluster
        await storage.add([make_job(f"via-{server.port}")])
    resumed = await (await open_cluster("beta")).unfinished()
    assert len(resumed) == len(redis_cluster.servers)


async def test_a_node_sigkilled_mid_run_on_a_cluster_resumes_with_nothing_lost(
    distributor: Distributor, start_node: NodeFactory, redis_cluster_url: str, tmp_path: Path
) -> None:
    """A real node process on the cluster: deferred jobs and a running job survive a SIGKILL,
    the running one counts its crashed attempt, and the monitor sees it all on the cluster."""
    settings = {"merge_job_itself_to_args": True}

    async def start() -> NodeProcess:
        proc = start_node("w1", [distributor.address], storage=redis_cluster_url, settings=settings)
        await wait_for_node(distributor, "w1", proc=proc)
        return proc

    node = await start()
    path = tmp_path / "ran.txt"
    starts = tmp_path / "starts.txt"
    deferred = [
        distributor.enqueue("record", {"path": str(path), "tag": f"d{i}"}, after=3)
        for i in range(30)
    ]
    running = distributor.enqueue("note_attempt", {"path": str(starts), "seconds": 30, "until": 2})
    with RedisMonitor(redis_cluster_url) as monitor:
        await async_wait_until(lambda: len(lines(starts)) == 1, 10)
        await async_wait_until(lambda: monitor.counts("w1").get("new", 0) == 30, 10)
        record = monitor.load(running.id)
        assert record is not None and (record["status"], record["attempt"]) == ("in progress", 1)
    node.kill()
    await start()
    await asyncio.wait_for(asyncio.gather(*deferred), 20)
    assert (await asyncio.wait_for(running, 20))["attempt_seen"] == 2
    assert sorted(line.split()[0] for line in lines(path)) == sorted(f"d{i}" for i in range(30))
    with RedisMonitor(redis_cluster_url) as monitor:
        await async_wait_until(lambda: monitor.jobs_for("w1") == {}, 5)
