"""The durable outbox and durable flows on a Redis Cluster (3 masters): their keys share a hash
tag per group (``{group}``) or per flow, so the claim and take-over scripts see every key they
touch on one master. Same scenarios as ``test_outbox`` and ``test_flow_durable``, run against
the cluster instead of a single server (real processes, real Redis Cluster)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
from redis.cluster import RedisCluster

from reactor import Config, Distributor
from reactor.distributor.outbox import leases_key
from reactor.storage.flows import flow_key, group_flows_key
from reactor.storage.redis_layout import cluster_url
from reactor.testing import async_wait_until, free_port

from ..conftest import FAST, NodeFactory, lines, wait_for_node
from .test_flow_durable import APP as FLOW_APP
from .test_flow_durable import READER
from .test_outbox import COUNT, enqueue_and_kill, tags

pytestmark = pytest.mark.redis


def cluster_client(url: str) -> RedisCluster:
    """A synchronous client of the cluster at a ``redis+cluster://`` URL, for the checks."""
    return RedisCluster.from_url(cluster_url(url)[0])


def first_step_recorded(url: str, flow_id: str) -> bool:
    client = cluster_client(url)
    try:
        raw = client.hget(flow_key(flow_id), "0")
    finally:
        client.close()
    return raw is not None and msgpack.unpackb(raw)[0] == "succeeded"


async def test_a_live_member_takes_over_a_killed_members_outbox_on_a_cluster(
    start_node: NodeFactory, redis_cluster_url: str, tmp_path: Path, apps: list
) -> None:
    url = redis_cluster_url
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), outbox=url, group="web")
    await d.start()
    try:
        node = start_node("w1", [d.address])
        await wait_for_node(d, "w1", proc=node)
        path = tmp_path / "ran.txt"
        _, killed = enqueue_and_kill(url, "web", path, apps)
        outbox = d._outbox
        assert outbox is not None
        await async_wait_until(lambda: outbox.stats["taken_over"] == COUNT, 15)
        assert time.monotonic() - killed <= float(FAST["heartbeat_timeout"]) + 2.0
        await async_wait_until(lambda: len(tags(path)) == COUNT, 30)
        assert tags(path) == {f"job{i}" for i in range(COUNT)}
        result = await asyncio.wait_for(d.enqueue("record", {"tag": "live"}), 10)
        assert result["result"] == "ok"
    finally:
        await d.stop()
    client = cluster_client(url)
    try:  # the group has no member left
        assert client.zcard(leases_key("web")) == 0
    finally:
        client.close()


async def test_a_member_finishes_the_flow_of_a_killed_application_on_a_cluster(
    start_node: NodeFactory, redis_cluster_url: str, tmp_path: Path, apps: list
) -> None:
    url = redis_cluster_url
    notes = tmp_path / "notes"
    member = Distributor(
        "127.0.0.1",
        free_port(),
        config=Config(**FAST),
        group="shop",
        outbox=url,
        result_store=url,
    )
    await member.start()
    try:
        app = subprocess.Popen(
            [sys.executable, "-c", FLOW_APP, url, str(notes)], stdout=subprocess.PIPE, text=True
        )
        apps.append(app)
        assert app.stdout is not None
        address = (await asyncio.to_thread(app.stdout.readline)).split()[1]
        flow_id = (await asyncio.to_thread(app.stdout.readline)).split()[1]
        start_node("w1", [address, member.address])
        await async_wait_until(lambda: first_step_recorded(url, flow_id), 20)
        os.kill(app.pid, signal.SIGKILL)
        await asyncio.to_thread(app.wait, 10)
        reader = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", READER, url, flow_id],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reader.returncode == 0, reader.stderr
        result = json.loads(reader.stdout)
        assert result["n"] == 3 and result["tag"] == "last"
        assert lines(notes).count("add last") == 1
        assert member.metrics.flows["continued"] == 1
        client = cluster_client(url)
        try:
            assert client.hlen(group_flows_key("shop")) == 0
            record = client.hgetall(flow_key(flow_id))
            assert msgpack.unpackb(record[b"end"])[0] == "succeeded"
            assert client.ttl(flow_key(flow_id)) > 0
        finally:
            client.close()
    finally:
        await member.stop()
