"""Issue 13's per-job options at enqueue: checked in the caller, carried to the node's record."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reactor import Config, Distributor
from reactor.testing import Cluster, async_wait_until

from .conftest import FAST


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"timeout": 0}, ValueError, "timeout= must be a finite number of seconds > 0"),
        ({"timeout": -1.5}, ValueError, "timeout="),
        ({"timeout": float("nan")}, ValueError, "timeout="),
        ({"timeout": "10"}, TypeError, "timeout= must be a number"),
        ({"max_attempt": 0}, ValueError, "max_attempt= must be between 1"),
        ({"max_attempt": 2.0}, TypeError, "max_attempt= must be a whole number"),
        ({"priority": 2**31}, ValueError, "priority= must be between"),
        ({"priority": 1.5}, TypeError, "priority= must be a whole number"),
        ({"priority": True}, TypeError, "priority="),
        ({"cron": "61 * * * *"}, ValueError, "bad cron expression"),
        ({"cron": "* * *"}, ValueError, "expected 5 fields"),
        ({"cron": "0 0 30 2 *"}, ValueError, "never fires"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, ValueError, "unknown time zone"),
        ({"cron": 5}, TypeError, "cron= must be a cron expression"),
        ({"tz": "Europe/Paris"}, ValueError, "tz= is the time zone of a cron= schedule"),
        ({"cron": "* * * * *", "period": 60}, ValueError, "cannot be combined with period="),
        ({"cron": "* * * * *", "after": 5}, ValueError, "cannot be combined with after="),
        ({"cron": "* * * * *", "run_at": time.time() + 9}, ValueError, "with run_at="),
    ],
)
async def test_bad_options_fail_in_the_caller(
    distributor: Distributor, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        distributor.enqueue("record", {}, **options)
    assert distributor.snapshot()["waiting"] == 0


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster({"noop": lambda args: None}, nodes=["opts"], config=Config(**FAST)) as c:
        yield c


async def test_options_reach_the_node_record(cluster: Cluster) -> None:
    distributor, node = cluster.distributor, cluster.node("opts")
    plain = distributor.enqueue("noop", {}, after=60)
    full = distributor.enqueue(
        "noop", {}, timeout=2.5, max_attempt=4, cron="30 2 * * *", tz="Europe/Paris", priority=-3
    )
    urgent = distributor.enqueue("noop", {}, after=60, priority=7)
    await async_wait_until(lambda: {plain.id, full.id, urgent.id} <= node.jobs.keys(), 10)
    a, b, c = node.jobs[plain.id], node.jobs[full.id], node.jobs[urgent.id]
    assert (a.timeout, a.max_attempt, a.cron, a.tz, a.priority) == (None, None, None, None, 0)
    assert (b.timeout, b.max_attempt, b.cron, b.tz, b.priority) == (
        2.5,
        4,
        "30 2 * * *",
        "Europe/Paris",
        -3,
    )
    assert c.priority == 7 and c.timeout is None
    # the cron job waits for its first run, a wall-clock instant at 02:30 Paris time
    assert b.run_at > time.time()
    assert time.strftime("%H:%M", time.gmtime(b.run_at)) in ("00:30", "01:30")
