"""Issue 9, case 5: the jobs of a node killed and never restarted finish on another node.

A node silent past ``node_lost_after`` is *lost*: every job it held (stored, deferred, running) is
reassigned to another eligible node (DESIGN §3). Node A holds immediate 200 ms jobs and deferred
jobs (after=1), all pinned to it non-strictly; it is SIGKILLed and never comes back; B must finish
all of them within ``node_lost_after`` + 1 s of the kill (plus the 0.2 s each of A's unfinished
immediate jobs takes to run on B, one after the other, as ``def`` jobs do).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.testing.support import async_wait_until
from tests.conftest import NodeFactory, wait_for_node

from .conftest import fault_config, loss_problems, report, run_pids, runs, settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]

NODE_LOST_AFTER = 4.0
IMMEDIATE, DEFERRED = 3, 10


async def test_jobs_of_a_node_killed_for_good_finish_on_the_other_within_node_lost_after(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    config = fault_config(node_lost_after=NODE_LOST_AFTER)
    d = Distributor("127.0.0.1", 0, config=config)
    await d.start()
    try:
        a = start_node("A", [d.address])
        b = start_node("B", [d.address])
        await wait_for_node(d, "A", proc=a)
        await wait_for_node(d, "B", proc=b)
        path = tmp_path / "ran.txt"
        now_tags = [f"i{i}" for i in range(IMMEDIATE)]
        later_tags = [f"d{i}" for i in range(DEFERRED)]
        handles = [
            d.enqueue("sleep_def", {"seconds": 0.2, "path": str(path), "tag": tag}, node="A")
            for tag in now_tags
        ] + [
            d.enqueue("sleep_def", {"path": str(path), "tag": tag}, node="A", after=1.0)
            for tag in later_tags
        ]
        # A has them all once its first job is done (they went out in one batch).
        await async_wait_until(lambda: len(runs(path)) >= 1, 10.0, message="A never ran a job")
        a.kill()
        killed = time.monotonic()
        left = IMMEDIATE - len(runs(path))
        budget = NODE_LOST_AFTER + 1.0 + 0.2 * left
        t = await settle(handles, budget)
        in_time = len(t.succeeded)
        t = await settle(handles, 3.0)  # late ones still count as not lost, but fail the bound
        ran = runs(path)
        pids = run_pids(path)
        on_a_after_kill = [tag for tag in later_tags if a.pid in pids.get(tag, [])]
        report(
            "node-lost",
            t,
            ran,
            time.monotonic() - killed,
            in_time=in_time,
            budget=f"{budget:.1f}s",
        )
        problems = loss_problems(t, ran, now_tags + later_tags)
        if in_time < len(handles):
            problems.append(
                f"only {in_time} of {len(handles)} finished within {budget:.1f}s of the kill"
            )
        if on_a_after_kill:
            problems.append(f"deferred jobs ran on the killed node: {on_a_after_kill}")
        assert not problems, "; ".join(problems)
    finally:
        await d.stop()
