"""How an application tests code that enqueues, with reactor.testing (no node processes).

Run: pytest examples/testing_app (needs pytest and pytest-asyncio; see README.md)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import shop

import reactor as JR
from reactor.testing import CapturingDistributor, Cluster, EagerDistributor


def test_an_order_enqueues_one_charge_and_a_later_receipt(
    reactor_capture: CapturingDistributor,
) -> None:
    shop.place_order(42, 1999, "ada@example.com")
    shop.place_order(42, 1999, "ada@example.com")  # the double click
    reactor_capture.assert_enqueued("charge", args={"order_id": 42, "amount_cents": 1999}, count=1)
    reactor_capture.assert_enqueued("send_receipt", count=2, after_between=(59, 61))
    assert reactor_capture.enqueued("charge")[0].priority == 10


def test_the_charge_chain_runs_inline_in_eager_mode(reactor_eager: EagerDistributor) -> None:
    handle = shop.place_order(7, 500, "bob@example.com")
    assert handle.done()  # ran before place_order returned
    assert handle.result()["ledger"] == "order 7: 500 cents"


def test_a_bad_order_fails_after_its_attempts(reactor_eager: EagerDistributor) -> None:
    with pytest.raises(JR.JobFailed, match="nothing to charge"):
        shop.place_order(8, 0, "eve@example.com").result()


def test_the_real_machinery_in_process(reactor_cluster: Cluster) -> None:
    handle = shop.place_order(9, 1200, "dan@example.com")
    assert handle.result(timeout=10)["charged"] == 1200


async def test_an_async_test_can_run_its_own_cluster_on_its_loop() -> None:
    async with Cluster(jobs=Path(__file__).parent / "shop_jobs", facade=True) as cluster:
        result = await shop.place_order(10, 300, "fay@example.com")
        assert result["ledger"] == "order 10: 300 cents"
        assert cluster.nodes[0].stats["succeeded"] >= 1
