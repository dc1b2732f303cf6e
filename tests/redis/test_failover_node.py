"""A read-only failover under a running node process (issue 10): a ``REPLICAOF`` demotes the
node's Redis mid-run. The node refuses jobs once and takes them again once (no flapping), and
every job enqueued during the outage runs exactly once after it (nothing was acknowledged that
Redis did not persist)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.testing import async_wait_until

from ..conftest import NodeFactory, lines, wait_for_node
from .conftest import ServerFactory

pytestmark = pytest.mark.redis


async def test_a_demoted_primary_is_one_refuse_and_one_take_announcement(
    distributor: Distributor,
    start_node: NodeFactory,
    make_redis_server: ServerFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reactor.distributor")
    primary, other = make_redis_server(), make_redis_server()
    node = start_node("w1", [distributor.address], storage=primary.url)
    await wait_for_node(distributor, "w1", proc=node)
    path = tmp_path / "ran.txt"
    assert (await asyncio.wait_for(distributor.enqueue("record", {}), 10))["result"] == "ok"
    caplog.clear()
    with primary.client() as client:
        client.replicaof("127.0.0.1", other.port)  # writes now get READONLY
        handles = []
        for i in range(30):  # jobs keep coming during the outage
            handles.append(distributor.enqueue("record", {"path": str(path), "tag": f"j{i}"}))
            await asyncio.sleep(0.1)
        client.replicaof("no", "one")
    await asyncio.wait_for(asyncio.gather(*handles), 30)
    tags = sorted(line.split()[0] for line in lines(path))
    assert tags == sorted(f"j{i}" for i in range(30)), "a job ran twice or not at all"
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("node w1 ")]
    flips = [m for m in said if m.endswith("new jobs")]
    assert flips == ["node w1 does not take new jobs", "node w1 takes new jobs"], said
    await async_wait_until(lambda: "takes writes again" in node.output(), 5)
