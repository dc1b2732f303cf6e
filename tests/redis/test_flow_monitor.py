"""``reactor monitor flow FLOW_ID``: a durable flow's steps and their status, from Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
import redis as sync_redis

from reactor import Config, Distributor, JobFailed, chain, step
from reactor.cli import main
from reactor.storage.flows import flow_key
from reactor.testing import async_wait_until

from ..conftest import FAST, NodeFactory, wait_for_node
from .test_dashboard import start_dashboard

pytestmark = pytest.mark.redis


def recorded(url: str, flow_id: str, field: str) -> bool:
    client = sync_redis.Redis.from_url(url)
    try:
        return bool(client.hexists(flow_key(flow_id), field))
    finally:
        client.close()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def test_monitor_flow_shows_each_step(
    start_node: NodeFactory, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), group="g", outbox=redis_url)
    await d.start()
    try:
        proc = start_node("w1", [d.address])
        await wait_for_node(d, "w1", proc=proc)
        failing = d.enqueue_flow(
            chain(step("flow_add", {"n": 1}), step("flow_fail"), step("flow_add"))
        )
        with pytest.raises(JobFailed):
            await failing
        await async_wait_until(lambda: recorded(redis_url, failing.id, "end"), 10)
        argv = ["monitor", "--redis", redis_url, "flow", failing.id]
        assert await asyncio.to_thread(main, [*argv, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["status"] == "failed" and "ValueError" in shown["error"]
        assert [(s["name"], s["status"]) for s in shown["steps"]] == [
            ("flow_add", "succeeded"),
            ("flow_fail", "failed"),
            ("flow_add", "skipped"),
        ]
        assert shown["steps"][0]["id"] == failing.steps[0][0] and shown["steps"][2]["id"] is None
        assert await asyncio.to_thread(main, argv) == 0
        table = capsys.readouterr().out
        assert f"flow {failing.id}: failed" in table and "3/3 steps ended" in table
        assert "ValueError: step failed at n=2" in table

        running = d.enqueue_flow(chain(step("flow_wait", {"seconds": 30.0}), step("flow_add")))
        await async_wait_until(lambda: recorded(redis_url, running.id, "0"), 10)
        assert await asyncio.to_thread(main, ["monitor", "--redis", redis_url, "flow",
                                              running.id, "--json"]) == 0  # fmt: skip
        shown = json.loads(capsys.readouterr().out)
        assert shown["status"] == "running"
        assert [s["status"] for s in shown["steps"]] == ["enqueued", "pending"]
        running.cancel()

        assert await asyncio.to_thread(main, ["monitor", "--redis", redis_url, "flow", "nope"]) == 1
        assert "no flow 'nope' in Redis" in capsys.readouterr().err

        # The dashboard's flow page shows the same.
        proc, base = await asyncio.to_thread(start_dashboard, redis_url)
        try:
            page = await asyncio.to_thread(fetch, f"{base}/flows/{failing.id}")
            live = await asyncio.to_thread(fetch, f"{base}/live/flows/{failing.id}")
            gone = await asyncio.to_thread(fetch, f"{base}/flows/nope")
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.communicate, timeout=15)
        assert f"Flow {failing.id}" in page and "ValueError: step failed at n=2" in page
        assert page.count('class="status skipped"') == 1
        assert f'href="/jobs/{failing.steps[0][0]}"' in page
        assert "<html" not in live and 'id="steps"' in live
        assert "No flow nope in Redis" in gone
    finally:
        await d.stop()
