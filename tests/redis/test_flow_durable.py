"""Durable flows (``group=``, ``outbox=``, ``result_store=``): the application that started a
flow is SIGKILLed after the first of three steps; a live or restarted member of its group
finishes the flow, and ``JR.result(flow id)`` in a third process returns its result (real
processes, real Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
import redis as sync_redis

from reactor import Config, Distributor, ReactorError, chain, step
from reactor.distributor.outbox import leases_key
from reactor.storage.flows import flow_key, group_flows_key
from reactor.testing import async_wait_until, free_port

from ..conftest import FAST, NodeFactory, lines, wait_for_node
from .conftest import sync_client

pytestmark = pytest.mark.redis

#: The application that starts the flow, says its address and the flow's id, and waits to be
#: killed.
APP = """
import sys, time
import reactor as JR
from reactor import chain, step

url, notes = sys.argv[1], sys.argv[2]
JR.config.update(heartbeat_interval=0.2, heartbeat_timeout=2.0, log_job_processing=False)
d = JR.start_distributor("127.0.0.1", 0, group="shop", outbox=url, result_store=url)
print("address", d.address, flush=True)
flow = chain(
    step("flow_add", {"n": 1, "path": notes, "tag": "first"}),
    step("flow_wait", {"seconds": 1.0}),
    step("flow_add", {"tag": "last"}),
)
print("flow", JR.enqueue_flow(flow).id, flush=True)
time.sleep(3600)
"""

#: A third process: the flow's result from the result store.
READER = """
import json, sys
import reactor as JR

JR.config["redis_url"] = sys.argv[1]
print(json.dumps(JR.result(sys.argv[2], timeout=40)), flush=True)
JR.stop()
"""


def first_step_recorded(url: str, flow_id: str) -> bool:
    client = sync_client(url)
    try:
        raw = client.hget(flow_key(flow_id), "0")
    finally:
        client.close()
    return raw is not None and msgpack.unpackb(raw)[0] == "succeeded"


@pytest.mark.parametrize(
    ("member_is", "any_redis_url"),
    [("live", "redis"), ("restarted", "redis"), ("live", "redis-cluster")],
    indirect=["any_redis_url"],
)
async def test_another_member_finishes_the_flow_of_a_killed_application(
    start_node: NodeFactory, any_redis_url: str, tmp_path: Path, apps: list, member_is: str
) -> None:
    """``live``: the member runs all along; ``restarted``: it starts after the kill (as the
    killed application would be restarted, on another port). Also on a 3-master Cluster: a
    flow's record has its own hash tag, the group's live flows share the outbox's."""
    redis_url = any_redis_url
    notes = tmp_path / "notes"
    member = Distributor(
        "127.0.0.1",
        free_port(),
        config=Config(**FAST),
        group="shop",
        outbox=redis_url,
        result_store=redis_url,
    )
    if member_is == "live":
        await member.start()
    try:
        app = subprocess.Popen(
            [sys.executable, "-c", APP, redis_url, str(notes)], stdout=subprocess.PIPE, text=True
        )
        apps.append(app)
        assert app.stdout is not None
        address = (await asyncio.to_thread(app.stdout.readline)).split()[1]
        flow_id = (await asyncio.to_thread(app.stdout.readline)).split()[1]
        start_node("w1", [address, member.address])
        await async_wait_until(lambda: first_step_recorded(redis_url, flow_id), 20)
        os.kill(app.pid, signal.SIGKILL)
        await asyncio.to_thread(app.wait, 10)
        if member_is == "restarted":
            await member.start()

        reader = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", READER, redis_url, flow_id],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reader.returncode == 0, reader.stderr
        result = json.loads(reader.stdout)
        assert result["n"] == 3 and result["tag"] == "last"
        # The flow went on from its finished first step: the member enqueued only the rest.
        # (The outbox may deliver again a job of the dead member whose entry it had not swept
        # yet, the first step's included: at-least-once; the flow counts its own copy only.)
        assert lines(notes).count("add last") == 1
        assert member.metrics.flows["continued"] == 1
        assert flow_id not in member.workflows.live  # ended, forgotten
        client = sync_client(redis_url)
        try:  # no live flow left in the group; the ended record is kept (with a TTL)
            assert client.hlen(group_flows_key("shop")) == 0
            record = client.hgetall(flow_key(flow_id))
            assert [msgpack.unpackb(record[str(i).encode()])[0] for i in range(3)] == [
                "succeeded"
            ] * 3
            assert msgpack.unpackb(record[b"end"])[0] == "succeeded"
            assert client.ttl(flow_key(flow_id)) > 0
        finally:
            client.close()
    finally:
        if member.started:
            await member.stop()


async def test_a_member_taken_for_gone_stops_driving_its_flows_and_a_stop_leaves_them(
    start_node: NodeFactory, redis_url: str
) -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), group="fence", outbox=redis_url)
    await d.start()
    stopped = False
    try:
        proc = start_node("w1", [d.address])
        await wait_for_node(d, "w1", proc=proc)
        flows = [
            d.enqueue_flow(chain(step("flow_wait", {"seconds": 30.0}), step("flow_add")))
            for _ in range(2)
        ]
        client = sync_redis.Redis.from_url(redis_url)
        try:  # another member claimed the first flow (it took this one for gone)
            # enqueue_flow on the loop returns before the record is written: wait for it.
            owned = group_flows_key("fence")
            await async_wait_until(lambda: client.hlen(owned) == 2, 10)
            client.zadd(leases_key("fence"), {"another-session": 2**50})  # alive, for long
            client.hset(owned, flows[0].id, "another-session")
        finally:
            client.close()
        with pytest.raises(ReactorError, match="claimed by another member") as caught:
            await asyncio.wait_for(flows[0], 10)
        assert f"JR.result({flows[0].id!r})" in str(caught.value)
        assert flows[0].id not in d.workflows.live and flows[1].id in d.workflows.live
        stopped = True
        await d.stop(drain_timeout=1.0)
        with pytest.raises(ReactorError, match="left to its group by a stopping distributor"):
            await asyncio.wait_for(flows[1], 1)
        client = sync_redis.Redis.from_url(redis_url)
        try:  # the flow is still the group's to continue, not failed
            assert client.hget(group_flows_key("fence"), flows[1].id) is not None
            assert not client.hexists(flow_key(flows[1].id), "end")
        finally:
            client.close()
    finally:
        if not stopped:
            await d.stop()
