"""``reactor monitor cancel JOB_ID`` and the dashboard's Cancel button (issue 20): a job stored
in Redis is marked and its node told over pub/sub, so a running attempt stops at once and a
waiting one never starts; a node that was down reads the mark when it resumes the record."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reactor import Config, Distributor, JobCancelledError, current_job, job
from reactor.cli import main
from reactor.node.driver import Node
from reactor.ops.monitor import RedisMonitor
from reactor.testing import registry_from
from reactor.testing.support import async_wait_until

from .test_dashboard import start_dashboard

pytestmark = pytest.mark.redis

DEADLINE = 10.0
stopped: dict[str, float] = {}


@job("long_wait")
async def long_wait(args: dict[str, Any]) -> None:
    args["began"] = True
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        stopped[args["key"]] = time.monotonic()
        raise


polite_started = threading.Event()


@job("polite_wait")
def polite_wait(args: dict[str, Any]) -> None:
    """A def job on the node's loop that checks the flag."""
    polite_started.set()
    ctx = current_job()
    end = time.monotonic() + DEADLINE
    while not ctx.cancelled and time.monotonic() < end:
        time.sleep(0.01)
    args["saw_cancel"] = ctx.cancelled
    stopped[args["key"]] = time.monotonic()


@contextlib.asynccontextmanager
async def redis_node(redis_url: str) -> AsyncIterator[tuple[Distributor, Node]]:
    """A distributor and a node keeping its jobs in Redis, on this loop."""
    config = Config(log_job_processing=False)
    distributor = Distributor("127.0.0.1", 0, config=config)
    await distributor.start()
    node = Node(
        "store-1",
        distributors=[distributor.address],
        storage=redis_url,
        registry=registry_from([long_wait, polite_wait]),
        config=config,
    )
    await node.start()
    cancels = node._runner.cancels
    assert cancels is not None
    await async_wait_until(cancels.subscribed.is_set, DEADLINE)
    try:
        yield distributor, node
    finally:
        await distributor.stop(drain_timeout=0.0)
        await node.stop(grace=1.0)


async def _running(node: Node, job_id: str) -> None:
    await async_wait_until(lambda: node.core is not None and node.core.running == 1, DEADLINE)
    assert node.core is not None and job_id in node.core.jobs


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


async def test_monitor_cancel_stops_a_running_job_stored_in_redis(redis_url: str) -> None:
    async with redis_node(redis_url) as (distributor, node):
        handle = distributor.enqueue("long_wait", {"key": "cli"})
        await _running(node, handle.id)
        asked = time.monotonic()
        code, out = await asyncio.to_thread(
            _cli, "monitor", "--redis", redis_url, "cancel", handle.id
        )
        assert code == 0, out
        assert f"job {handle.id} cancelled on node store-1" in out
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert stopped["cli"] - asked < 2.0  # heard at once (pub/sub), not by polling
        assert node.stats["cancelled"] == 1 and node.stats["attempts"] == 1
        # finished now, its record removed (written behind): a second cancel is refused
        with RedisMonitor(redis_url) as monitor:
            await async_wait_until(lambda: monitor.load(handle.id) is None, DEADLINE)
        code, out = await asyncio.to_thread(
            _cli, "monitor", "--redis", redis_url, "cancel", handle.id
        )
        assert code == 1 and "no stored job" in out  # removed (remove_cancelled_jobs)


async def test_monitor_cancel_on_a_redis_cluster(redis_cluster_url: str) -> None:
    async with redis_node(redis_cluster_url) as (distributor, node):
        handle = distributor.enqueue("long_wait", {"key": "cluster"})
        await _running(node, handle.id)
        with RedisMonitor(redis_cluster_url) as monitor:
            assert await asyncio.to_thread(monitor.cancel, handle.id) is True
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert "cluster" in stopped


async def test_monitor_cancel_of_a_waiting_job_means_it_never_starts(redis_url: str) -> None:
    async with redis_node(redis_url) as (distributor, node):
        handle = distributor.enqueue("long_wait", {"key": "waiting"}, after=30)
        await distributor.drain(DEADLINE)
        with RedisMonitor(redis_url) as monitor:
            assert await asyncio.to_thread(monitor.cancel, handle.id) is True
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE)
        assert node.stats["attempts"] == 0


async def test_a_cancel_while_the_node_is_down_is_read_at_its_restart(redis_url: str) -> None:
    async with redis_node(redis_url) as (distributor, node):
        handle = distributor.enqueue("long_wait", {"key": "down"}, after=30)
        await distributor.drain(DEADLINE)
    # both stopped: the node kept the job for its restart
    with RedisMonitor(redis_url) as monitor:
        assert await asyncio.to_thread(monitor.cancel, handle.id) is True
        record = monitor.load(handle.id)
        assert record is not None and record["status"] in ("new", "queued")
    async with redis_node(redis_url) as (_, node):
        await async_wait_until(lambda: node.stats["cancelled"] == 1, DEADLINE)
        assert node.stats["attempts"] == 0
        with RedisMonitor(redis_url) as monitor:
            # ended cancelled, then removed (written behind)
            await async_wait_until(lambda: monitor.load(handle.id) is None, DEADLINE)


async def test_monitor_cancel_reaches_a_def_job_holding_the_loop(redis_url: str) -> None:
    asked: list[float] = []

    def cancel_once_started(job_id: str) -> None:
        assert polite_started.wait(DEADLINE)
        with RedisMonitor(redis_url) as monitor:
            asked.append(time.monotonic())
            assert monitor.cancel(job_id) is True

    async with redis_node(redis_url) as (distributor, _):
        handle = distributor.enqueue("polite_wait", {"key": "def"})
        canceller = threading.Thread(target=cancel_once_started, args=(handle.id,))
        canceller.start()
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, DEADLINE + 5)
        canceller.join()
        assert stopped["def"] - asked[0] < 2.0  # not at its 10 s deadline: it saw the flag


async def test_the_dashboard_cancel_button_stops_a_running_job(redis_url: str) -> None:
    dashboard, base = await asyncio.to_thread(start_dashboard, redis_url)
    try:
        async with redis_node(redis_url) as (distributor, node):
            handle = distributor.enqueue("long_wait", {"key": "button"})
            await _running(node, handle.id)

            def page_and_click() -> str:
                with urllib.request.urlopen(f"{base}/jobs/{handle.id}", timeout=5) as response:
                    page = response.read().decode()
                request = urllib.request.Request(
                    f"{base}/jobs/{handle.id}/cancel", data=b"next=/", method="POST"
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200  # redirected to "/"
                return page

            page = await asyncio.to_thread(page_and_click)
            assert f'action="/jobs/{handle.id}/cancel"' in page
            with pytest.raises(JobCancelledError):
                await asyncio.wait_for(handle, DEADLINE)
            assert "button" in stopped
    finally:
        dashboard.terminate()
        dashboard.communicate(timeout=15)
