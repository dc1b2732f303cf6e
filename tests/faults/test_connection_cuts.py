"""Issue 9, case 3: feedback lost when the connection is cut is sent again.

The node dials a TCP proxy; while 500 jobs flow, the proxy cuts every connection five times, each
time with bytes in flight (the path stalls for a moment first, so feedback and jobs sit in the TCP
buffers when it is cut). ZeroMQ reconnects quickly (no welcome), so what was in flight must be sent
again on the reconnect or on the retransmission timer, and every handle must resolve with success.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.testing import async_wait_until
from tests.conftest import NodeFactory, wait_for_node

from .conftest import ProxyFactory, loss_problems, report, runs, settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]

ROUNDS = 5
PER_ROUND = 100


async def test_feedback_survives_connection_cuts_through_a_proxy(
    distributor: Distributor, start_node: NodeFactory, make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    proxy = make_proxy(distributor)
    node = start_node("A", [proxy.address])
    await wait_for_node(distributor, "A", proc=node)
    path = tmp_path / "ran.txt"
    tags = [f"c{i}" for i in range(ROUNDS * PER_ROUND)]
    handles = []
    start = time.monotonic()
    cuts = 0
    for r in range(ROUNDS):
        await async_wait_until(lambda: proxy.connections > 0, 5.0, message="no reconnect")
        batch = tags[r * PER_ROUND : (r + 1) * PER_ROUND]
        handles += [
            distributor.enqueue("sleep_def", {"seconds": 0.002, "path": str(path), "tag": tag})
            for tag in batch
        ]
        # Cut in the middle of the flow, with bytes surely in flight: stall the path while the
        # node finishes more jobs (their feedback waits in the TCP buffers), then cut it. Whatever
        # was in flight is gone, as when a stalled NAT or load balancer resets a connection.
        half = r * PER_ROUND + PER_ROUND // 2
        await async_wait_until(lambda: len(runs(path)) >= half, 10.0, interval=0.002)  # noqa: B023
        proxy.blackhole()
        await async_wait_until(lambda: len(runs(path)) >= half + 10, 10.0, interval=0.002)  # noqa: B023
        proxy.cut()
        proxy.heal()
        cuts += 1
    t = await settle(handles, 10.0)
    ran = runs(path)
    report("connection-cuts", t, ran, time.monotonic() - start, cuts=cuts, accepted=proxy.accepted)
    problems = loss_problems(t, ran, tags)
    assert not problems, f"after {cuts} cuts: " + "; ".join(problems)
