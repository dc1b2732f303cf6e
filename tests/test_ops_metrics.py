"""Issue 12: Prometheus metrics of a real node process and a distributor, scraped over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reactor import Config, Distributor
from reactor.errors import JobCancelledError, JobFailed
from reactor.testing import async_wait_until, free_port

from .conftest import FAST, NodeFactory, scrape, value, wait_for_node


async def test_metrics_after_100_jobs(start_node: NodeFactory, tmp_path: Path) -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), metrics_port=0)
    await d.start()
    try:
        assert d.metrics_server is not None
        port = free_port()
        node = start_node(
            "m1",
            [d.address],
            settings={"max_attempt": 2, "retry_multiplier": 0},
            extra=["--metrics-port", str(port)],
        )
        await wait_for_node(d, "m1", proc=node)
        ok = [d.enqueue("record", {}) for _ in range(80)]
        bad = [d.enqueue("failing", {"path": str(tmp_path / "f.txt")}) for _ in range(20)]
        await asyncio.wait_for(asyncio.gather(*ok), 30)
        for handle in bad:
            try:
                await asyncio.wait_for(handle, 30)
                raise AssertionError("a failing job succeeded")
            except JobFailed:
                pass
        # the node counts an attempt right after its feedback leaves: wait for the last one
        await async_wait_until(
            lambda: value(scrape(port), 'reactor_jobs_failed_total{job_name="failing"}') == 20,
            10,
        )
        text = scrape(port)
        assert value(text, 'reactor_jobs_received_total{job_name="record"}') == 80
        assert value(text, 'reactor_jobs_received_total{job_name="failing"}') == 20
        assert value(text, 'reactor_jobs_started_total{job_name="record"}') == 80
        assert value(text, 'reactor_jobs_started_total{job_name="failing"}') == 40
        assert value(text, 'reactor_jobs_succeeded_total{job_name="record"}') == 80
        assert value(text, 'reactor_jobs_retried_total{job_name="failing"}') == 20
        assert value(text, 'reactor_jobs_failed_total{job_name="failing"}') == 20
        assert value(text, 'reactor_run_duration_seconds_count{job_name="record"}') == 80
        assert value(text, 'reactor_queue_wait_seconds_count{job_name="failing"}') == 40
        assert value(text, 'reactor_in_flight{job_name="record"}') == 0
        assert value(text, "reactor_storage_unavailable") == 0
        assert value(text, "reactor_reconnects_total") == 0
        # the distributor: one end-to-end observation per finished job
        dtext = scrape(d.metrics_server.port)
        assert value(dtext, 'reactor_feedback_lag_seconds_count{job_name="record"}') == 80
        assert value(dtext, 'reactor_feedback_lag_seconds_count{job_name="failing"}') == 20
    finally:
        await d.stop()
    assert d.metrics_server is None


async def test_waiting_gauge_counts_deferred_jobs(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    port = free_port()
    node = start_node("m2", [distributor.address], extra=["--metrics-port", str(port)])
    await wait_for_node(distributor, "m2", proc=node)
    handles = [distributor.enqueue("record", {}, after=600) for _ in range(7)]
    await async_wait_until(
        lambda: value(scrape(port), 'reactor_waiting{job_name="record"}') == 7, 10
    )
    for handle in handles:
        handle.cancel()


async def test_every_cancel_is_counted(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    """Issue 22: reactor_jobs_cancelled_total ignored handle.cancel() of a job that had not run."""
    port = free_port()
    node = start_node("c1", [distributor.address], extra=["--metrics-port", str(port)])
    await wait_for_node(distributor, "c1", proc=node)
    waiting = [distributor.enqueue("record", {}, after=30) for _ in range(3)]
    sample = 'reactor_jobs_received_total{job_name="record"}'
    await async_wait_until(lambda: value(scrape(port), sample) == 3, 10, 0.05)
    for handle in waiting[:2]:
        handle.cancel()
    for handle in waiting[:2]:
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, 10)
    cancelled = 'reactor_jobs_cancelled_total{job_name="record"}'
    await async_wait_until(lambda: value(scrape(port), cancelled) == 2, 10, 0.05)


async def test_a_cancel_before_any_node_took_the_job_is_counted_by_the_distributor() -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), metrics_port=0)
    await d.start()
    try:
        assert d.metrics_server is not None
        handle = d.enqueue("record", {})  # no node: it waits at the distributor
        handle.cancel()
        with pytest.raises(JobCancelledError):
            await asyncio.wait_for(handle, 10)
        text = await asyncio.to_thread(scrape, d.metrics_server.port)
        assert value(text, 'reactor_jobs_cancelled_total{job_name="record"}') == 1
    finally:
        await d.stop()
