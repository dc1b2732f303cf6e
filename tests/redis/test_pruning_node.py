"""A real node process prunes its kept records in Redis on a timer: ``kept_jobs_ttl`` removes a
failed record a TTL after it failed, ``kept_jobs_max`` keeps the newest few; unfinished jobs stay.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from reactor import Distributor
from reactor.jobs.record import FAILED
from reactor.ops.monitor import RedisMonitor
from reactor.testing.support import async_wait_until

from ..conftest import NodeFactory, wait_for_node

pytestmark = pytest.mark.redis


async def test_failed_records_vanish_two_to_four_seconds_after_failing(
    distributor: Distributor, start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    proc = start_node("w1", [distributor.address], storage=redis_url,
                      settings={"kept_jobs_ttl": 2})  # fmt: skip
    await wait_for_node(distributor, "w1", proc=proc)
    errors: list[dict[str, Any]] = []
    waiting = distributor.enqueue("record", {}, after=60)
    path = str(tmp_path / "f.log")
    doomed = [
        distributor.enqueue("failing", {"path": path}, max_attempt=1, on_error=errors.append).id
        for _ in range(3)
    ]
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(lambda: len(errors) == 3, 15)
        records = {i: monitor.load(i) or {} for i in doomed}
        assert all(r.get("status") == FAILED for r in records.values())
        vanished: dict[str, float] = {}

        def all_gone() -> bool:
            for job_id in doomed:
                if job_id not in vanished and monitor.load(job_id) is None:
                    vanished[job_id] = time.time()
            return len(vanished) == len(doomed)

        await async_wait_until(all_gone, 10, interval=0.05)
        # From the failed_at the node stored (its wall clock: this machine's) to the vanishing.
        lifetimes = [vanished[i] - records[i]["failed_at"] for i in doomed]
        print("kept_jobs_ttl=2: failed records vanished after", [f"{t:.2f}s" for t in lifetimes])
        assert all(2.0 <= t <= 4.0 for t in lifetimes), lifetimes
        record = monitor.load(waiting.id)
        assert record is not None and record["status"] != FAILED  # unfinished: untouched
        assert monitor.counts("w1").get(FAILED, 0) == 0


async def test_kept_jobs_max_keeps_the_ten_newest_of_fifty_failed(
    distributor: Distributor, start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    proc = start_node("w1", [distributor.address], storage=redis_url,
                      settings={"kept_jobs_max": 10})  # fmt: skip
    await wait_for_node(distributor, "w1", proc=proc)
    path = str(tmp_path / "f.log")
    errors: list[str] = []

    def fail(count: int) -> list[str]:
        return [
            distributor.enqueue(
                "failing", {"path": path}, max_attempt=1, on_error=lambda a: errors.append(a)
            ).id
            for _ in range(count)
        ]

    fail(40)
    await async_wait_until(lambda: len(errors) == 40, 20)
    newest = fail(10)
    await async_wait_until(lambda: len(errors) == 50, 20)
    waiting = distributor.enqueue("record", {}, after=60)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(lambda: monitor.counts("w1").get(FAILED, 0) == 10, 10)
        kept, _ = monitor.jobs_page("w1", status=FAILED, limit=100)
        assert {r["id"] for r in kept} == set(newest)
        await async_wait_until(lambda: monitor.load(waiting.id) is not None, 10)
