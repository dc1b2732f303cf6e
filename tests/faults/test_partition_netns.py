"""Issue 9, case 4: a 10 s link-down between a node and its distributor loses nothing.

The distributor runs in the test process, bound on the root-side veth address of namespace 1; node A
runs in namespace 1 and node B in namespace 2 (routed to that address through its own veth). Jobs
arrive at 100/s for 15 s; B's link is down from t=1 s to t=11 s, and B gets jobs again for the last
seconds. Jobs sent around the moments the link goes and comes back are the ones at risk (issue 9
saw the old core lose those sent ~0.5 s after it returned).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reactor import Distributor
from tests.conftest import wait_for_node

from .conftest import fault_config, loss_problems, node_command, report, run_pids, runs, settle
from .netns import NetLab, NsProcess

pytestmark = [pytest.mark.slow, pytest.mark.faults]

RATE = 100  # jobs per second
DURATION = 15.0
DOWN_AT, DOWN_FOR = 1.0, 10.0


async def test_a_10s_link_down_in_network_namespaces_loses_nothing(
    netlab: NetLab, tmp_path: Path
) -> None:
    ns_a = netlab.add()
    ns_b = netlab.add()
    config = fault_config()
    d = Distributor(ns_a.host_ip, 0, config=config)
    await d.start()
    try:
        nodes: dict[str, NsProcess] = {}
        for name, ns in (("A", ns_a), ("B", ns_b)):
            nodes[name] = ns.run(node_command(name, [d.address]), tmp_path / f"{name}.log")
        for name, proc in nodes.items():
            await wait_for_node(d, name, proc=proc)  # type: ignore[arg-type]
        path = tmp_path / "ran.txt"
        tags: list[str] = []
        handles = []
        start = time.monotonic()
        down = up = False
        tick = 1.0 / 10
        while (now := time.monotonic() - start) < DURATION:
            if not down and now >= DOWN_AT:
                ns_b.link_down()
                down = True
            if down and not up and now >= DOWN_AT + DOWN_FOR:
                ns_b.link_up()
                up = True
            for _ in range(int(RATE * tick)):
                tag = f"n{len(tags)}"
                tags.append(tag)
                handles.append(d.enqueue("sleep_def", {"path": str(path), "tag": tag}))
            await asyncio.sleep(tick)  # pacing: RATE jobs per second
        t = await settle(handles, 15.0)
        ran = runs(path)
        on_b = sum(1 for pids in run_pids(path).values() if nodes["B"].pid in pids)
        report("netns-link-down", t, ran, time.monotonic() - start, jobs=len(tags), ran_on_b=on_b)
        problems = loss_problems(t, ran, tags)
        if t.pending:
            enq = {h.id: i for i, h in enumerate(handles)}
            at = sorted(enq[h.id] / RATE for h in t.pending)
            problems.append(f"lost jobs were enqueued at t={[round(x, 2) for x in at[:10]]} s")
        assert not problems, "; ".join(problems) + f"\nB's log:\n{nodes['B'].output()[-2000:]}"
    finally:
        await d.stop()
