"""Durable enqueue: an application SIGKILLed right after ``enqueue`` returned loses no job; a
restarted member of its group, or a live one, delivers them (real processes, real Redis)."""

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

from reactor import Config, Distributor, StorageUnavailableError
from reactor.distributor.outbox import box_key, leases_key
from reactor.testing import async_wait_until
from reactor.testing.redis_server import RedisServer

from ..conftest import FAST, NodeFactory, lines, wait_for_node
from .conftest import sync_client

pytestmark = pytest.mark.redis

#: An application that enqueues COUNT jobs through the outbox from 4 threads, says so, and
#: waits to be killed (no node ever reaches it, so none of its jobs was delivered by it).
APP = """
import sys, threading, time
import reactor as JR

url, group, path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
JR.config.update(heartbeat_interval=0.2, heartbeat_timeout=2.0)
d = JR.start_distributor("127.0.0.1", 0, outbox=url, group=group)

def enqueue(k):
    for i in range(k, count, 4):
        JR.enqueue("record", {"path": path, "tag": f"job{i}"})

threads = [threading.Thread(target=enqueue, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print("enqueued", d.session, flush=True)
time.sleep(3600)
"""

COUNT = 400


def enqueue_and_kill(
    url: str, group: str, path: Path, apps: list[subprocess.Popen[str]]
) -> tuple[str, float]:
    """Run the application until its enqueues returned, SIGKILL it; (its session, kill time)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", APP, url, group, str(path), str(COUNT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    apps.append(proc)
    assert proc.stdout is not None
    said = proc.stdout.readline().split()
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.wait(10)
    assert said[:1] == ["enqueued"], "the application did not finish enqueueing"
    return said[1], killed


def tags(path: Path) -> set[str]:
    return {line.split()[0] for line in lines(path)}


async def test_restarted_application_delivers_every_job_of_a_killed_one(
    start_node: NodeFactory, redis_url: str, tmp_path: Path, apps: list
) -> None:
    path = tmp_path / "ran.txt"
    session, _ = enqueue_and_kill(redis_url, "shop", path, apps)
    client = sync_redis.Redis.from_url(redis_url)
    try:  # every job whose enqueue returned is in Redis
        assert client.hlen(box_key("shop", session)) == COUNT
    finally:
        client.close()
    assert not path.exists()

    # The application restarts (new session, new ephemeral port) with a node.
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), outbox=redis_url, group="shop")
    await d.start()
    node = start_node("w1", [d.address])
    await wait_for_node(d, "w1", proc=node)
    await async_wait_until(lambda: len(tags(path)) == COUNT, 30, message=f"{tags(path)=}")
    assert tags(path) == {f"job{i}" for i in range(COUNT)}
    outbox = d._outbox
    assert outbox is not None
    await async_wait_until(lambda: not outbox.unstored, 10)
    await d.stop()
    client = sync_redis.Redis.from_url(redis_url)
    try:  # delivered jobs left no entries, and the group has no member left
        assert client.hlen(box_key("shop", d.session)) == 0
        assert client.zcard(leases_key("shop")) == 0
    finally:
        client.close()


@pytest.mark.parametrize("any_redis_url", ["redis", "redis-cluster"], indirect=True)
async def test_a_live_member_takes_over_a_killed_members_outbox(
    start_node: NodeFactory, any_redis_url: str, tmp_path: Path, apps: list
) -> None:
    """Also on a 3-master Cluster: the group's keys share its hash tag, so the take-over script
    sees every key it touches on one master."""
    redis_url = any_redis_url
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), outbox=redis_url, group="web")
    await d.start()
    node = start_node("w1", [d.address])
    await wait_for_node(d, "w1", proc=node)
    path = tmp_path / "ran.txt"
    _, killed = enqueue_and_kill(redis_url, "web", path, apps)
    outbox = d._outbox
    assert outbox is not None
    await async_wait_until(lambda: outbox.stats["taken_over"] == COUNT, 15)
    took = time.monotonic() - killed
    lease = float(FAST["heartbeat_timeout"])
    print(f"\noutbox: a killed member's {COUNT} jobs taken over after {took:.2f} s")
    assert took <= lease + 2.0
    await async_wait_until(lambda: len(tags(path)) == COUNT, 30)
    assert tags(path) == {f"job{i}" for i in range(COUNT)}
    # A job enqueued here still works through the outbox, with its feedback.
    result = await asyncio.wait_for(d.enqueue("record", {"tag": "live"}), 10)
    assert result["result"] == "ok"
    await d.stop()
    client = sync_client(redis_url)
    try:  # the group has no member left
        assert client.zcard(leases_key("web")) == 0
    finally:
        client.close()


async def test_enqueue_raises_when_the_outbox_cannot_take_the_job(
    make_redis_server: Callable[..., RedisServer],
) -> None:
    server = make_redis_server()
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), outbox=server.url, group="g")
    await d.start()
    await asyncio.to_thread(d.enqueue, "record", {"tag": "before"})  # written
    server.kill()
    with pytest.raises(StorageUnavailableError, match="not enqueued"):
        await asyncio.to_thread(d.enqueue, "record", {"tag": "during"})
    outbox = d._outbox
    assert outbox is not None and outbox.stats["written"] == 1
    await d.stop()
