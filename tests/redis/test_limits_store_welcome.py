"""A distributor's ``limits_store`` reaches nodes that have none (DESIGN §11:
``JR.start_distributor(..., limits_store=...)``): its welcome names the store, and a node with no
``limits_store`` of its own grants its limits there from then on. Two node processes without the
setting, a job name limited to 2 at once: never more than 2 attempts run across both (with each
node's own memory gate, up to 4 would)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from reactor import Config, Distributor

from ..conftest import FAST, NodeFactory, lines, wait_for_node

pytestmark = pytest.mark.redis


def _most_at_once(path: Path) -> tuple[int, int]:
    """(attempts, most running at once) from the start/end lines the jobs wrote."""
    events = []
    for line in lines(path):
        what, _, at = line.split()
        events.append((float(at), 1 if what == "start" else -1))
    running = most = 0
    for _, delta in sorted(events):  # at equal times an end counts first
        running += delta
        most = max(most, running)
    return sum(1 for _, d in events if d == 1), most


async def test_nodes_without_a_store_use_the_distributors(
    start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST, limits_store=redis_url))
    await d.start()
    try:
        nodes = [start_node(f"w{i}", [d.address]) for i in (1, 2)]
        for i, node in enumerate(nodes, 1):
            await wait_for_node(d, f"w{i}", proc=node)
        path = tmp_path / "slots.txt"
        handles = [
            d.enqueue("flow_slot", {"path": str(path), "tag": f"j{i}", "seconds": 0.1})
            for i in range(40)
        ]
        await asyncio.wait_for(asyncio.gather(*handles), 90)
        started, most = _most_at_once(path)
        assert started == 40
        assert most == 2, f"{most} attempts ran at once under a limit of 2 (concurrency=2)"
        ran_on = {
            node.output().count("limits held in the distributor's limits_store") for node in nodes
        }
        assert ran_on == {1}, "a node did not adopt the distributor's limits_store"
    finally:
        await d.stop()


def test_the_facade_takes_limits_store_at_start_distributor(redis_url: str) -> None:
    script = (
        "import sys, reactor as JR\n"
        "JR.start_distributor('127.0.0.1', 0, limits_store=sys.argv[1])\n"
        "print(JR.config['limits_store'])\n"
        "JR.stop()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, redis_url], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [redis_url]
