"""Discovery end to end: distributors on ephemeral ports announce themselves in a real Redis,
node processes started with ``--discover`` find them, follow newcomers and drop the departed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis as sync_redis

from reactor import Config, Distributor
from reactor.storage.client import make_client
from reactor.storage.discovery import Announcement, hash_key, list_announcements
from reactor.testing import async_wait_until
from reactor.testing.redis_server import RedisServer

from ..conftest import FAST, NodeFactory, wait_for_node

pytestmark = pytest.mark.redis

#: An application process: a distributor on an ephemeral port, announced; prints its address.
APP = """
import asyncio, sys
from reactor import Config, Distributor

async def main():
    config = Config(heartbeat_interval=0.2, heartbeat_timeout=2.0, log_job_processing=False)
    d = Distributor("127.0.0.1", 0, config=config, announce=sys.argv[1], group="web")
    await d.start()
    print(d.address, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_app(url: str, apps: list[subprocess.Popen[str]]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", APP, url], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    apps.append(proc)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    assert address, "the application did not start"
    return proc, address


def log_has(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


async def announced(url: str) -> list[Announcement]:
    client = make_client(url)
    try:
        return await list_announcements(client)
    finally:
        await client.aclose()


async def test_nodes_follow_distributors_as_they_come_and_go(
    start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    config = Config(**FAST)
    first = [
        Distributor("127.0.0.1", 0, config=config, announce=redis_url, group="web")
        for _ in range(3)
    ]
    for d in first:
        await d.start()
    assert len({d.port for d in first}) == 3 and all(d.port for d in first)
    nodes = [start_node(f"n{i}", [], extra=["--discover", redis_url]) for i in range(2)]
    for d in first:
        for i, proc in enumerate(nodes):
            await wait_for_node(d, f"n{i}", proc=proc)

    listed = await announced(redis_url)
    assert sorted(a.address for a in listed) == sorted(d.address for d in first)
    assert {a.group for a in listed} == {"web"} and {a.pid for a in listed} == {os.getpid()}
    assert all(a.lease_until > time.time() for a in listed)

    def snapshots_show_both_nodes() -> bool:  # published with a lease renewal
        with sync_redis.Redis.from_url(redis_url) as client:
            raw = client.hvals(hash_key())
        views = [Announcement.from_json(r).snapshot["nodes"] for r in raw]
        return [{n["name"] for n in v} for v in views] == [{"n0", "n1"}] * 3  # type: ignore[attr-defined]

    await async_wait_until(snapshots_show_both_nodes, 10)

    # A fourth distributor, started later: every node joins it.
    fourth = Distributor("127.0.0.1", 0, config=config, announce=redis_url, group="web")
    started = time.monotonic()
    await fourth.start()
    for i in range(2):
        await async_wait_until(lambda i=i: fourth.node_alive(f"n{i}"), 10)
    join = time.monotonic() - started

    # One stops: every node drops it at once (pushed, not the lease).
    gone = first.pop(0)
    started = time.monotonic()
    await gone.stop()
    for proc in nodes:
        assert proc.log_path is not None
        await async_wait_until(
            lambda p=proc.log_path: log_has(p, f"distributor {gone.address} withdrawn"), 10
        )
    leave = time.monotonic() - started
    assert gone.address not in {a.address for a in await announced(redis_url)}
    print(f"\ndiscovery: join {join * 1000:.0f} ms, graceful leave {leave * 1000:.0f} ms")
    assert leave < float(FAST["heartbeat_timeout"])  # faster than any lease could lapse

    # The remaining ones still serve every node.
    for d in [*first, fourth]:
        handle = d.enqueue("where", {"x": 1})
        assert (await asyncio.wait_for(handle, 10))["x"] == 1
        await d.stop()


async def test_a_killed_distributor_disappears_after_its_lease(
    start_node: NodeFactory, redis_url: str, apps: list[subprocess.Popen[str]]
) -> None:
    proc, address = start_app(redis_url, apps)
    static = Distributor("127.0.0.1", 0, config=Config(**FAST))
    await static.start()
    node = start_node("n0", [static.address], extra=["--discover", redis_url])
    await wait_for_node(static, "n0", proc=node)
    log_path = node.log_path
    assert log_path is not None
    await async_wait_until(lambda: log_has(log_path, f"connected to distributor {address}"), 10)

    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    await async_wait_until(lambda: log_has(log_path, f"distributor {address} withdrawn"), 15)
    leave = time.monotonic() - killed
    print(f"\ndiscovery: a SIGKILLed distributor dropped after {leave * 1000:.0f} ms")
    lease = float(FAST["heartbeat_timeout"])
    assert leave < lease + 2.0
    assert address not in {a.address for a in await announced(redis_url)}
    # The static distributor, never announced, still serves the node.
    handle = static.enqueue("where", {"x": 2})
    assert (await asyncio.wait_for(handle, 10))["x"] == 2
    await static.stop()


async def test_nodes_keep_their_distributors_through_a_redis_outage(
    start_node: NodeFactory, make_redis_server: Callable[..., RedisServer]
) -> None:
    server = make_redis_server()
    config = Config(**FAST)
    d1 = Distributor("127.0.0.1", 0, config=config, announce=server.url)
    await d1.start()
    node = start_node("n0", [], extra=["--discover", server.url])
    await wait_for_node(d1, "n0", proc=node)
    log_path = node.log_path
    assert log_path is not None

    server.kill()  # no lease can be renewed or read now
    await async_wait_until(lambda: log_has(log_path, "cannot confirm distributor session"), 15)
    handle = d1.enqueue("where", {"x": 3})  # the node still serves d1
    assert (await asyncio.wait_for(handle, 10))["x"] == 3
    assert not log_has(log_path, f"distributor {d1.address} withdrawn")

    server.start()  # the node subscribes again and finds a newcomer
    d2 = Distributor("127.0.0.1", 0, config=config, announce=server.url)
    await d2.start()
    await async_wait_until(lambda: d2.node_alive("n0"), 20)
    assert d1.node_alive("n0")
    await d2.stop()
    await d1.stop()
