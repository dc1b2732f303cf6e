"""A workflow's outcome reaches the result store under the flow's id (``JR.result(flow_id)``
from any process), as a job's does; a group's list is kept as ``{"results": [...]}``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from reactor import Config, Distributor, JobFailed, chain, chord, group, step
from reactor.storage.client import make_client
from reactor.storage.results import wait_result

from ..conftest import FAST, NodeFactory, wait_for_node

pytestmark = pytest.mark.redis

#: Another process: reads a flow's outcome with JR.result, one JSON line.
READER = """
import json, sys
import reactor as JR

JR.config["redis_url"] = sys.argv[1]
print(json.dumps(JR.result(sys.argv[2], timeout=30)), flush=True)
JR.stop()
"""


async def test_flow_outcomes_in_the_result_store(start_node: NodeFactory, redis_url: str) -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), result_store=redis_url)
    await d.start()
    client = make_client(redis_url)
    try:
        proc = start_node("w1", [d.address])
        await wait_for_node(d, "w1", proc=proc)
        flow = chain(step("flow_add", {"n": 1}), step("flow_add", {"inc": 5}))
        handle = d.enqueue_flow(flow)
        assert (await handle)["n"] == 7
        reader = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", READER, redis_url, handle.id],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert reader.returncode == 0, reader.stderr
        assert json.loads(reader.stdout)["n"] == 7  # from a third process

        listed = d.enqueue_flow(group(step("flow_add", {"n": i}) for i in range(3)))
        await listed
        kept = await wait_result(client, listed.id, timeout=10)
        assert [r["n"] for r in kept["results"]] == [1, 2, 3]

        failing = d.enqueue_flow(chord(group(step("flow_fail", {"n": 4})), step("flow_total")))
        with pytest.raises(JobFailed):
            await failing
        with pytest.raises(JobFailed, match="step failed at n=4") as caught:
            await wait_result(client, failing.id, timeout=10)
        assert caught.value.type_name == "ValueError"
    finally:
        await client.aclose()
        await d.stop()
