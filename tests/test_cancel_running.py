"""Cancelling a running attempt (issue 20): an ``async def`` job gets CancelledError at its next
await, ``def`` and ``defer=True`` jobs see ``current_job().cancelled`` turn True, and the job
ends cancelled, once, whatever the body then does; and the neighbours of that path (a job
waiting for its retry, a deferred job, a cancel racing the end, a cancel after the end)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pytest

import reactor as JR
from reactor import (
    Config,
    JobCancelledError,
    OutsideJobError,
    ProgressError,
    current_job,
    job,
)
from reactor.app.runtime import Runtime
from reactor.distributor.driver import Distributor
from reactor.jobs import record as R
from reactor.jobs.context import JobContext
from reactor.node.driver import Node
from reactor.testing import Cluster, async_wait_until, registry_from

#: What the bodies saw, by test key (bodies run in the loop, tasks and threads).
seen: dict[str, Any] = {}
started: dict[str, threading.Event] = {}

DEADLINE = 10.0


def _started(key: str) -> threading.Event:
    return started.setdefault(key, threading.Event())


@job("sleepy")
async def sleepy(args: dict[str, Any]) -> None:
    key = args["key"]
    ctx = current_job()
    seen[key + ":ctx"] = (ctx.id, ctx.name, ctx.attempt)
    _started(key).set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        seen[key] = time.monotonic()
        raise


@job("stubborn")
async def stubborn(args: dict[str, Any]) -> None:
    _started(args["key"]).set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        seen[args["key"]] = "swallowed"
    args["finished"] = True


@job("polite")
def polite(args: dict[str, Any]) -> None:
    """Checks the flag, on the loop (def) or in a thread (defer=True)."""
    key = args["key"]
    _started(key).set()
    ctx = current_job()
    end = time.monotonic() + DEADLINE
    while not ctx.cancelled and time.monotonic() < end:
        time.sleep(0.01)
    seen[key] = ctx.cancelled


@job("flaky", max_attempt=3)
def flaky(args: dict[str, Any]) -> None:
    seen.setdefault(args["key"], []).append(current_job().attempt)
    raise RuntimeError("try again later")


@job("quick")
def quick(args: dict[str, Any]) -> None:
    args["done"] = True


def _interrupts(cluster: Cluster) -> list[float]:
    """When each cancel reached a running attempt on the cluster's node (wraps the port)."""
    times: list[float] = []
    attempts = cluster.nodes[0]._runner.attempts
    interrupt = attempts.interrupt

    def timed(record: Any) -> None:
        times.append(time.monotonic())
        interrupt(record)

    attempts.interrupt = timed  # type: ignore[method-assign]
    assert cluster.nodes[0].core is not None
    cluster.nodes[0].core.port.interrupt = timed  # type: ignore[method-assign]
    return times


@contextlib.contextmanager
def two_loops(jobs: list[Any]) -> Any:
    """A distributor and a node on loops of their own (threads), as in two processes: a def
    job holding the node's loop does not hold the distributor's."""
    config = Config(log_job_processing=False)
    app, worker = Runtime(config), Runtime(config)
    distributor = Distributor("127.0.0.1", 0, config=config)
    app.call(distributor.start)
    node = Node(
        "node-1", distributors=[distributor.address], registry=registry_from(jobs), config=config
    )
    worker.call(node.start)
    try:
        yield distributor
    finally:
        worker.call(lambda: node.stop(grace=1.0))
        app.call(lambda: distributor.stop(drain_timeout=0.0))
        worker.stop()
        app.stop()


def _wait_sync(event: threading.Event) -> None:
    assert event.wait(DEADLINE), "the job did not start"


async def _wait(event: threading.Event) -> None:
    end = time.monotonic() + DEADLINE
    while not event.is_set():
        assert time.monotonic() < end, "the job did not start"
        await asyncio.sleep(0.005)


async def test_a_running_async_job_gets_cancelled_error_within_100_ms() -> None:
    async with Cluster(jobs=[sleepy]) as cluster:
        times = _interrupts(cluster)
        handle = cluster.enqueue("sleepy", {"key": "async"})
        await _wait(_started("async"))
        handle.cancel()
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert len(times) == 1
        assert seen["async"] - times[0] < 0.1  # the next await after the cancel reached it
        assert seen["async:ctx"] == (handle.id, "sleepy", 1)
        assert cluster.nodes[0].stats["cancelled"] == 1
        assert cluster.nodes[0].stats["attempts"] == 1  # no retry


@pytest.mark.parametrize("defer", [False, True], ids=["def", "defer"])
def test_a_def_job_that_checks_cancelled_stops(defer: bool) -> None:
    key = f"polite-{defer}"
    with two_loops([polite]) as distributor:
        handle = distributor.enqueue("polite", {"key": key}, defer=defer)
        _wait_sync(_started(key))
        began = time.monotonic()
        handle.cancel()
        with pytest.raises(JobCancelledError):
            handle.result(DEADLINE)
        assert seen[key] is True
        assert time.monotonic() - began < DEADLINE / 2  # stopped early, not at its deadline


async def test_an_async_job_that_swallows_cancelled_error_still_ends_cancelled() -> None:
    async with Cluster(jobs=[stubborn]) as cluster:
        handle = cluster.enqueue("stubborn", {"key": "swallow"})
        await _wait(_started("swallow"))
        handle.cancel()
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert seen["swallow"] == "swallowed"
        assert cluster.nodes[0].stats["succeeded"] == 0


async def test_a_job_waiting_for_its_retry_is_cancelled_at_once() -> None:
    config = Config(log_job_processing=False, retry_multiplier=60)
    async with Cluster(jobs=[flaky], config=config) as cluster:
        handle = cluster.enqueue("flaky", {"key": "backoff"})
        core = cluster.nodes[0].core
        assert core is not None

        def waiting_for_attempt_2() -> bool:
            job = core.jobs.get(handle.id)
            return job is not None and job.status == R.ERROR and job.timer is not None

        await async_wait_until(waiting_for_attempt_2, DEADLINE)  # it waits 60 s for attempt 2
        assert seen["backoff"] == [1]
        handle.cancel()
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert seen["backoff"] == [1]


async def test_a_deferred_job_is_cancelled_before_it_runs() -> None:
    async with Cluster(jobs=[quick]) as cluster:
        handle = cluster.enqueue("quick", {}, after=30)
        await cluster.distributor.drain(DEADLINE)  # stored on its node
        handle.cancel()
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert cluster.nodes[0].stats["attempts"] == 0


async def test_a_cancel_racing_the_end_gives_exactly_one_outcome() -> None:
    outcomes: dict[str, list[str]] = {}

    def on_success(args: dict[str, Any]) -> None:
        outcomes.setdefault(args["n"], []).append("success")

    async with Cluster(jobs=[quick]) as cluster:
        handles = [
            cluster.enqueue("quick", {"n": str(n)}, on_success=on_success) for n in range(40)
        ]
        for n, handle in enumerate(handles):
            if n % 3 == 0:
                await asyncio.sleep(0)
            handle.cancel()
        results = await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), DEADLINE)
        for n, result in enumerate(results):
            called = outcomes.get(str(n), [])
            if isinstance(result, JobCancelledError):
                assert called == []
            else:
                assert result["done"] is True and called == ["success"]
        node = cluster.nodes[0]
        assert node.stats["succeeded"] + node.stats["cancelled"] == 40


async def test_a_cancel_after_the_end_is_a_no_op() -> None:
    async with Cluster(jobs=[quick]) as cluster:
        handle = cluster.enqueue("quick", {})
        result = await asyncio.wait_for(handle, DEADLINE)
        handle.cancel()  # no error
        cluster.distributor.cancel(handle.id)  # what JR.cancel(job_id) does: no error either
        assert (await handle) == result == {"done": True}
        await asyncio.sleep(0.05)  # the assertion's window: the late cancel reaches the node
        assert cluster.nodes[0].stats["cancelled"] == 0


async def test_jr_cancel_reaches_a_running_attempt_by_id() -> None:
    async with Cluster(jobs=[sleepy], facade=True) as cluster:
        handle = JR.enqueue("sleepy", {"key": "facade"})
        await _wait(_started("facade"))
        JR.cancel(handle.id)
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert cluster.nodes[0].stats["cancelled"] == 1
    with pytest.raises(TypeError, match="takes a job id"):
        JR.cancel(42)  # type: ignore[arg-type]


def test_current_job_outside_a_job_is_one_clear_error() -> None:
    with pytest.raises(OutsideJobError, match="only available while a job runs"):
        current_job()


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half", None, True])
def test_progress_takes_a_fraction_between_0_and_1(bad: Any) -> None:
    ctx = JobContext("j1", "job", 1)
    with pytest.raises(ProgressError, match="a fraction between 0 and 1"):
        ctx.progress(bad)
    with pytest.raises(ProgressError, match="a note that is a string"):
        ctx.progress(0.5, note=3)  # type: ignore[arg-type]
    ctx.progress(0)
    ctx.progress(1, "done")
