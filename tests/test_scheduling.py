"""Issue 3: deferred, run_at and periodic jobs on node timers; cancellation; defer=True."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from pathlib import Path

import pytest

from reactor import Distributor, JobCancelledError, JobFailed
from reactor.testing import async_wait_until

from .conftest import NodeFactory, Recorder, lines, wait_for_node


@pytest.fixture
async def node_up(distributor: Distributor, start_node: NodeFactory) -> None:
    proc = start_node(
        "w1", [distributor.address], settings={"max_attempt": 3, "retry_multiplier": 0}
    )
    await wait_for_node(distributor, "w1", proc=proc)


async def test_after_runs_on_time_not_before(distributor: Distributor, node_up: None) -> None:
    began = time.time()
    handle = distributor.enqueue("record", {}, after=1.5)
    await asyncio.sleep(1.0)  # the assertion's window: not run before its time
    assert not handle.done(), "an after=1.5 job ran before 1.0 s"
    result = await asyncio.wait_for(handle, 1.5)
    assert 1.5 - 0.005 <= result["started"] - began < 2.5


async def test_fractions_of_a_second_are_honoured(distributor: Distributor, node_up: None) -> None:
    began = time.time()
    result = await asyncio.wait_for(distributor.enqueue("record", {}, after=0.4), 5)
    assert result["started"] - began >= 0.38


async def test_run_at_lateness_is_small(distributor: Distributor, node_up: None) -> None:
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.7)
    result = await asyncio.wait_for(distributor.enqueue("record", {}, run_at=due), 5)
    lateness = result["started"] - due.timestamp()
    assert -0.002 <= lateness < 0.2
    epoch_due = time.time() + 0.3
    result = await asyncio.wait_for(distributor.enqueue("record", {}, run_at=epoch_due), 5)
    assert -0.002 <= result["started"] - epoch_due < 0.2


async def test_naive_run_at_is_rejected_clearly(distributor: Distributor) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        distributor.enqueue("record", {}, run_at=dt.datetime.now())
    with pytest.raises(ValueError, match="either after= or run_at="):
        distributor.enqueue("record", {}, after=1, run_at=time.time())
    with pytest.raises(ValueError, match="period="):
        distributor.enqueue("record", {}, period=0)


async def test_periodic_runs_spaced_then_cancel_stops_it_for_good(
    distributor: Distributor, node_up: None, tmp_path: Path
) -> None:
    path = tmp_path / "runs.txt"
    ok = Recorder()
    handle = distributor.enqueue("periodic", {"path": str(path)}, period=0.5, on_success=ok)
    deadline = time.monotonic() + 5
    while len(lines(path)) < 3:
        assert time.monotonic() < deadline, "a period=0.5 job did not run three times in 5 s"
        await asyncio.sleep(0.02)
    handle.cancel()
    with pytest.raises(JobCancelledError):
        await asyncio.wait_for(handle, 5)
    runs = [float(line.split()[1]) for line in lines(path)]
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(0.48 <= g < 0.7 for g in gaps[:2]), gaps
    count = len(runs)
    await asyncio.sleep(1.2)  # more than two periods: a live timer would have fired again
    assert len(lines(path)) == count
    assert [a["runs"] for a in ok.args][:3] == [1, 2, 3]


async def test_periodic_job_cancelling_itself_on_third_run_gives_three_success_feedbacks(
    distributor: Distributor, node_up: None, tmp_path: Path
) -> None:
    path = tmp_path / "runs.txt"
    ok, err = Recorder(), Recorder()
    handle = distributor.enqueue(
        "periodic", {"path": str(path), "cancel_at": 3}, period=0.2, on_success=ok, on_error=err
    )
    result = await asyncio.wait_for(handle, 5)
    assert result["runs"] == 3
    assert [a["runs"] for a in ok.args] == [1, 2, 3] and not err.calls
    await asyncio.sleep(0.5)  # the assertion's window: over two periods, no fourth run
    assert len(lines(path)) == 3


async def test_cancel_job_in_an_errback_gives_one_error_feedback_and_no_retry(
    distributor: Distributor, node_up: None, tmp_path: Path
) -> None:
    path = tmp_path / "attempts.txt"
    err = Recorder()
    with pytest.raises(JobFailed) as info:
        await asyncio.wait_for(
            distributor.enqueue("fail_then_cancel", {"path": str(path)}, on_error=err), 5
        )
    assert info.value.type_name == "NameError"
    assert len(err.calls) == 1 and str(err.args[0]["error"]).startswith("NameError")
    await asyncio.sleep(0.3)  # the assertion's window: no second attempt
    assert lines(path) == ["attempt"]  # max_attempt is 3, but the errback cancelled


async def test_cancel_a_deferred_job_held_by_a_node(
    distributor: Distributor, node_up: None, tmp_path: Path
) -> None:
    path = tmp_path / "ran.txt"
    handle = distributor.enqueue("record", {"path": str(path)}, after=0.8)
    # It reached the node (stored there) and waits on the node's timer.
    await async_wait_until(lambda: distributor.unstored_count() == 0, 5)
    handle.cancel()
    with pytest.raises(JobCancelledError, match="cancelled"):
        await asyncio.wait_for(handle, 5)
    await asyncio.sleep(0.9)  # the assertion's window: past the due time, a live timer would fire
    assert not path.exists()


async def test_cancel_a_job_still_waiting_in_the_distributor(distributor: Distributor) -> None:
    handle = distributor.enqueue("record", {})
    handle.cancel()
    with pytest.raises(JobCancelledError):
        await asyncio.wait_for(handle, 2)
    assert distributor.snapshot()["waiting"] == 0


async def test_defer_runs_the_body_off_the_loop_thread(
    distributor: Distributor, node_up: None
) -> None:
    deferred = await asyncio.wait_for(distributor.enqueue("where", {}, defer=True), 5)
    assert deferred["main_thread"] is False and deferred["callback_main_thread"] is True
    plain = await asyncio.wait_for(distributor.enqueue("where", {}), 5)
    assert plain["main_thread"] is True
