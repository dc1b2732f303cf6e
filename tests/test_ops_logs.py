"""Issue 12: a node says when it cannot reach a distributor (with backoff), and names slow jobs."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from reactor import Distributor
from reactor.node.reachability import FIRST_WARNING, MAX_GAP, Reachability
from reactor.testing import async_wait_until, free_port

from .conftest import NodeFactory, wait_for_node


def test_warnings_back_off_and_stop_once_reached(caplog: pytest.LogCaptureFixture) -> None:
    reconnects: list[int] = []
    reach = Reachability("w1", lambda: reconnects.append(1))
    caplog.set_level(logging.INFO, "reactor.node")
    warned_at: list[float] = []
    t = 0.0
    while t <= 700.0:  # a tick every 0.5 s, unreached for 700 s
        before = reach.warnings
        reach.check("10.0.0.9:5000", False, t)
        if reach.warnings > before:
            warned_at.append(t)
        t += 0.5
    assert warned_at[:6] == [5.0, 15.0, 35.0, 75.0, 155.0, 315.0]
    assert warned_at[6] - warned_at[5] == MAX_GAP  # capped
    text = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "node w1 has not reached distributor 10.0.0.9:5000 for 5s" in text[0]
    assert "for 15s" in text[1]
    reach.check("10.0.0.9:5000", True, t)
    assert "reached distributor 10.0.0.9:5000 after" in caplog.records[-1].getMessage()
    assert reconnects == []  # a first welcome is no reconnect
    count = reach.warnings
    reach.check("10.0.0.9:5000", False, t + 1)  # lost: counting starts again
    reach.check("10.0.0.9:5000", False, t + FIRST_WARNING)
    assert reach.warnings == count
    reach.check("10.0.0.9:5000", False, t + 1 + FIRST_WARNING)
    assert reach.warnings == count + 1
    reach.check("10.0.0.9:5000", True, t + 7)
    assert reconnects == [1]


async def test_node_names_the_distributor_it_cannot_reach(start_node: NodeFactory) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    node = start_node("lonely", [address])
    pattern = re.compile(rf"WARNING.*node lonely has not reached distributor {address} for \d+s")
    await async_wait_until(lambda: bool(pattern.search(node.output())), 20, 0.1)
    assert node.proc.poll() is None  # still running, still dialing


async def test_a_def_job_holding_the_loop_is_named(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    node = start_node("slow", [distributor.address], settings={"slow_job_warning": 0.3})
    await wait_for_node(distributor, "slow", proc=node)
    handle = distributor.enqueue("block", {"seconds": 1.0})
    await asyncio.wait_for(handle, 20)
    pattern = re.compile(
        rf"WARNING.*job {handle.id} \('block'\) has held the node's loop for (\d+\.\d)s"
    )
    await async_wait_until(lambda: bool(pattern.search(node.output())), 10, 0.05)
    match = pattern.search(node.output())
    assert match is not None and 0.3 <= float(match.group(1)) < 1.0
