"""Issue 9, case 8: after an application restart following an outage, re-sends stay bounded.

Node A runs jobs for a first distributor, which stops while they run (the application goes away);
nothing listens on its port for 8 s while A keeps finishing jobs and holds their feedback; then a
new distributor starts on the same port and enqueues new jobs. They must all succeed, and the new
distributor must receive a bounded number of feedback messages: at most two per job it enqueued,
plus the feedback A held for the old distributor (acknowledged once and dropped, never a storm).

The count comes from ``Distributor.stats["feedback_received"]`` (every Feedback message received).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.testing.support import async_wait_until, free_port
from tests.conftest import NodeFactory, wait_for_node

from .conftest import fault_config, loss_problems, report, runs, settle, tally

pytestmark = [pytest.mark.slow, pytest.mark.faults]

OLD_JOBS = 300
NEW_JOBS = 100
OUTAGE = 8.0


def _feedback_counter(d: Distributor) -> Callable[[], int]:
    """How many Feedback messages ``d`` has received."""
    return lambda: d.stats.get("feedback_received", 0)


async def _quiet(count: Callable[[], int], quiet: float, timeout: float) -> None:
    """Wait until ``count()`` has not changed for ``quiet`` seconds (at most ``timeout``)."""
    last = [count(), time.monotonic()]

    def still() -> bool:
        now, value = time.monotonic(), count()
        if value != last[0]:
            last[:] = [value, now]
        return now - last[1] >= quiet

    await async_wait_until(still, timeout, interval=0.05, message="feedback never went quiet")


async def test_restart_after_an_8s_outage_gives_no_resend_storm(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    config = fault_config()
    port = free_port()
    path = tmp_path / "ran.txt"
    first = Distributor("127.0.0.1", port, config=config)
    await first.start()
    node = start_node("A", [f"127.0.0.1:{port}"])
    await wait_for_node(first, "A", proc=node)
    old_tags = [f"old{i}" for i in range(OLD_JOBS)]
    old = [
        first.enqueue("sleep_def", {"seconds": 0.02, "path": str(path), "tag": tag})
        for tag in old_tags
    ]
    await async_wait_until(lambda: len(runs(path)) >= 50, 15.0, message="the old jobs never ran")
    await first.stop()  # the application goes away while A still has ~250 jobs to run
    old_ok = len(tally(old).succeeded)
    await asyncio.sleep(OUTAGE)  # the fault: nothing listens on the port for 8 s
    second = Distributor("127.0.0.1", port, config=config)
    received = _feedback_counter(second)
    await second.start()
    try:
        await wait_for_node(second, "A", proc=node)
        start = time.monotonic()
        new_tags = [f"new{i}" for i in range(NEW_JOBS)]
        new = [second.enqueue("sleep_def", {"path": str(path), "tag": tag}) for tag in new_tags]
        t = await settle(new, 15.0)
        await _quiet(received, 1.0, 15.0)
        ran = runs(path)
        held = sum(1 for tag in old_tags if ran[tag]) - old_ok  # feedback A held for `first`
        bound = 2 * NEW_JOBS + held
        stats = second.stats
        report(
            "restart-after-outage",
            t,
            ran,
            time.monotonic() - start,
            feedback_received=received(),
            bound=bound,
            held_for_old=held,
            stats=stats,
        )
        problems = loss_problems(t, ran, new_tags)
        if received() > bound:
            problems.append(
                f"the new distributor received {received()} feedback messages for {NEW_JOBS} "
                f"jobs plus {held} held for the old one (bound {bound}): a re-send storm"
            )
        assert not problems, "; ".join(problems)
    finally:
        await second.stop()
