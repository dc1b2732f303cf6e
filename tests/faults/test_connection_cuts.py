"""Issue 9, case 3: feedback lost when the connection is cut is sent again.

The node dials a TCP proxy; while 500 jobs flow, the proxy cuts every connection five times, each
time with bytes in flight (the path stalls while the node finishes ten more jobs, then is cut).
ZeroMQ reconnects quickly (no welcome), so what was in flight must be sent again on the reconnect or
on the retransmission timer, and every handle must resolve with success. Two kinds of cut: both ways
(both peers see a reset), and half-open (only the node's side is reset, as when a NAT drops the
flow: the distributor sees a second connection from the node and nothing else, so it cannot notice
the loss by itself).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.testing.support import async_wait_until
from tests.conftest import NodeFactory, wait_for_node

from .conftest import ProxyFactory, loss_problems, report, runs, settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]

ROUNDS = 5
PER_ROUND = 100


@pytest.mark.parametrize("half_open", [False, True], ids=["both-ways", "half-open"])
async def test_feedback_survives_connection_cuts_through_a_proxy(
    half_open: bool,
    distributor: Distributor,
    start_node: NodeFactory,
    make_proxy: ProxyFactory,
    tmp_path: Path,
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
        # Cut in the middle of the flow, with bytes in flight: stall the path while the node
        # finishes ten more jobs (their feedback waits in the proxy), then cut. What was in
        # flight is gone, as when a stalled NAT or load balancer resets a connection.
        half = r * PER_ROUND + PER_ROUND // 2
        await async_wait_until(lambda: len(runs(path)) >= half, 10.0, interval=0.002)  # noqa: B023
        proxy.blackhole()
        await async_wait_until(lambda: len(runs(path)) >= half + 10, 10.0, interval=0.002)  # noqa: B023
        held = proxy.held["up"]
        proxy.cut(half_open=half_open)
        proxy.heal()
        cuts += 1
    t = await settle(handles, 10.0)
    ran = runs(path)
    report(
        f"connection-cuts-{half_open=}",
        t,
        ran,
        time.monotonic() - start,
        cuts=cuts,
        last_cut_dropped=held,
    )
    problems = loss_problems(t, ran, tags)
    assert not problems, f"after {cuts} cuts: " + "; ".join(problems)
