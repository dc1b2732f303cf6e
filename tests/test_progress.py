"""Progress of a running attempt (issue 20): ``current_job().progress()`` in ``async def``,
``def`` and ``defer=True`` jobs reaches ``handle.progress`` and ``on_progress`` in order,
coalesced on the node (the last report before the outcome always arrives, later ones never)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from reactor import current_job, job
from reactor.node.attempts import PROGRESS_EVERY
from reactor.testing import Cluster, EagerDistributor

DEADLINE = 10.0


@job("steps")
async def steps(args: dict[str, Any]) -> None:
    ctx = current_job()
    for i in range(1, 5):
        ctx.progress(i / 4, f"step {i}")
        await asyncio.sleep(PROGRESS_EVERY * 1.5)  # each report goes out on its own


@job("burst")
def burst(args: dict[str, Any]) -> None:
    """100 reports at once, from the loop (def) or a thread (defer=True)."""
    ctx = current_job()
    for i in range(1, 101):
        ctx.progress(i / 100, None if i < 100 else "done")


@job("threads")
def threads(args: dict[str, Any]) -> None:
    """Reports from four threads of the attempt at once (defer=True): thread-safe."""
    ctx = current_job()

    def report(t: int) -> None:
        for i in range(50):
            ctx.progress(i / 100, f"thread {t}")

    workers = [threading.Thread(target=report, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ctx.progress(1.0, "done")


@job("late")
def late(args: dict[str, Any]) -> None:
    """A report after the attempt ended (a timer thread it left behind): dropped."""
    ctx = current_job()
    ctx.progress(0.5, "half")
    threading.Timer(0.05, ctx.progress, (0.9, "too late")).start()


def _recorder() -> tuple[list[tuple[float, str | None]], Any]:
    got: list[tuple[float, str | None]] = []

    def on_progress(fraction: float, note: str | None) -> None:
        got.append((fraction, note))

    return got, on_progress


async def test_progress_reaches_the_handle_and_on_progress_in_order() -> None:
    got, on_progress = _recorder()
    async with Cluster(jobs=[steps]) as cluster:
        handle = cluster.enqueue("steps", {}, on_progress=on_progress)
        assert handle.progress is None
        await asyncio.wait_for(handle, DEADLINE)
        assert got == [(0.25, "step 1"), (0.5, "step 2"), (0.75, "step 3"), (1.0, "step 4")]
        assert handle.progress == (1.0, "step 4")


@pytest.mark.parametrize("defer", [False, True], ids=["def", "defer"])
async def test_reports_are_coalesced_and_the_last_one_arrives(defer: bool) -> None:
    got, on_progress = _recorder()
    async with Cluster(jobs=[burst]) as cluster:
        handle = cluster.enqueue("burst", {}, defer=defer, on_progress=on_progress)
        await asyncio.wait_for(handle, DEADLINE)
        assert got[-1] == (1.0, "done") == handle.progress
        assert len(got) < 20  # a burst of 100 is coalesced (about 10 a second go out)
        fractions = [f for f, _ in got]
        assert fractions == sorted(fractions)  # in order


async def test_progress_from_several_threads_of_an_attempt() -> None:
    got, on_progress = _recorder()
    async with Cluster(jobs=[threads]) as cluster:
        handle = cluster.enqueue("threads", {}, defer=True, on_progress=on_progress)
        await asyncio.wait_for(handle, DEADLINE)
        assert got[-1] == (1.0, "done") == handle.progress
        assert all(0 <= f <= 1 for f, _ in got)


async def test_a_report_after_the_outcome_is_dropped() -> None:
    got, on_progress = _recorder()
    async with Cluster(jobs=[late]) as cluster:
        handle = cluster.enqueue("late", {}, defer=True, on_progress=on_progress)
        await asyncio.wait_for(handle, DEADLINE)
        end = time.monotonic() + 0.3  # the timer fires at 0.05 s: give it time to arrive
        while time.monotonic() < end:
            await asyncio.sleep(0.02)
        assert got == [(0.5, "half")]
        assert handle.progress == (0.5, "half")


async def test_on_progress_must_be_callable() -> None:
    async with Cluster(jobs=[steps]) as cluster:
        with pytest.raises(TypeError, match="on_progress= must be callable"):
            cluster.enqueue("steps", {}, on_progress="print")  # type: ignore[arg-type]


async def test_an_on_progress_that_raises_is_logged_and_the_job_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(fraction: float, note: str | None) -> None:
        raise RuntimeError("broken callback")

    async with Cluster(jobs=[steps]) as cluster:
        handle = cluster.enqueue("steps", {}, on_progress=broken)
        await asyncio.wait_for(handle, DEADLINE)
        assert handle.progress == (1.0, "step 4")
    assert "the progress feedback of job" in caplog.text


@job("eager_steps", max_attempt=2)
def eager_steps(args: dict[str, Any]) -> None:
    ctx = current_job()
    ctx.progress(0.5, f"attempt {ctx.attempt}")
    if ctx.attempt == 1:
        raise RuntimeError("once")


def test_current_job_and_progress_in_eager_mode() -> None:
    got, on_progress = _recorder()
    eager = EagerDistributor([eager_steps, steps])
    handle = eager.enqueue("eager_steps", {}, on_progress=on_progress)
    assert handle.result(1) == {}
    assert got == [(0.5, "attempt 1"), (0.5, "attempt 2")] and handle.progress == got[-1]


async def test_an_eager_async_job_on_a_running_loop_has_its_context() -> None:
    eager = EagerDistributor([steps])  # runs on a thread of its own: this loop is running
    handle = eager.enqueue("steps", {})
    assert handle.progress == (1.0, "step 4")
