"""A running job's progress on the dashboard's job page (issue 20): a node keeping its jobs in
Redis stores each job's latest report beside its record, at most about once a second, and
deletes it when the attempt ends; the dashboard (a real ``reactor dashboard`` process) shows it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reactor import Config, Distributor, current_job, job
from reactor.cli import main
from reactor.jobs.limits import describe_limits
from reactor.node.driver import Node
from reactor.node.progress_writer import ProgressWriter
from reactor.storage.client import make_sync_client
from reactor.storage.memory import MemoryStorage
from reactor.storage.progress import (
    StoredProgress,
    decode_progress,
    encode_progress,
    progress_key,
    progress_of,
    read_progress,
)
from reactor.testing import registry_from
from reactor.testing.support import async_wait_until, free_port, wait_until

from .test_dashboard import start_dashboard

pytestmark = pytest.mark.redis

DEADLINE = 10.0
REPORTS = 1000
release = threading.Event()


@job("halfway")
async def halfway(args: dict[str, Any]) -> None:
    """Reports 42% and waits until the test releases it."""
    current_job().progress(0.42, note="42 of 100 rows")
    while not release.is_set():
        await asyncio.sleep(0.01)


@job("holding")
def holding(args: dict[str, Any]) -> None:
    """A def job that reports, then holds the node's loop until released."""
    current_job().progress(0.25, note="holding the loop")
    assert release.wait(DEADLINE)


@job("chatty")
def chatty(args: dict[str, Any]) -> None:
    """A def job reporting a thousand times in a tight loop."""
    ctx = current_job()
    for i in range(REPORTS):
        ctx.progress((i + 1) / REPORTS, note=f"row {i + 1}")


@job("steady")
async def steady(args: dict[str, Any]) -> None:
    """An async job reporting a thousand times over a few seconds."""
    ctx = current_job()
    for i in range(REPORTS):
        ctx.progress((i + 1) / REPORTS)
        await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def redis_node(redis_url: str) -> AsyncIterator[tuple[Distributor, Node, ProgressWriter]]:
    """A distributor and a node keeping its jobs in Redis, on this loop, and its writer."""
    config = Config(log_job_processing=False)
    distributor = Distributor("127.0.0.1", 0, config=config)
    await distributor.start()
    node = Node(
        "prog-1",
        distributors=[distributor.address],
        storage=redis_url,
        registry=registry_from([halfway, holding, chatty, steady]),
        config=config,
    )
    await node.start()
    writer = node._runner.attempts.stored
    assert writer is not None
    try:
        yield distributor, node, writer
    finally:
        release.set()
        await distributor.stop(drain_timeout=0.0)
        await node.stop(grace=1.0)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def _page_shows_progress(redis_url: str, base: str) -> None:
    release.clear()
    async with redis_node(redis_url) as (distributor, _node, _writer):
        handle = distributor.enqueue("halfway", {})
        redis = make_sync_client(redis_url, detect_cluster=True)
        key = progress_key("reactor", "prog-1", handle.id)
        try:
            await async_wait_until(lambda: redis.exists(key) == 1, DEADLINE)
            stored = read_progress(redis, "reactor", "prog-1", handle.id)
            assert stored is not None and stored.fraction == 0.42 and stored.attempt == 1
            assert stored.note == "42 of 100 rows" and abs(time.time() - stored.at) < DEADLINE
            assert 0 < redis.ttl(key) <= 86400  # expires even if the node dies (result_ttl)
            for path in (f"/jobs/{handle.id}", f"/live/jobs/{handle.id}"):
                page = await asyncio.to_thread(_get, base + path)
                assert 'id="progress"' in page, page
                assert '<progress value="0.42" max="1">' in page and "42%" in page
                assert "42 of 100 rows" in page and "attempt 1, reported" in page
            code, out = await asyncio.to_thread(_cli, "show", handle.id, redis_url)
            assert code == 0 and "42%  42 of 100 rows  (reported " in out, out
            code, out = await asyncio.to_thread(_cli, "show", handle.id, redis_url, "--json")
            assert code == 0 and json.loads(out)["progress"]["fraction"] == 0.42, out
            release.set()
            await asyncio.wait_for(handle, DEADLINE)
            await async_wait_until(lambda: redis.exists(key) == 0, DEADLINE)  # deleted at the end
        finally:
            redis.close()


@pytest.mark.parametrize("url_fixture", ["redis_url", "redis_cluster_url"])
async def test_the_job_page_shows_a_running_jobs_progress(
    url_fixture: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue(url_fixture)
    dashboard, base = await asyncio.to_thread(start_dashboard, redis_url)
    try:
        await _page_shows_progress(redis_url, base)
    finally:
        dashboard.terminate()
        dashboard.communicate(timeout=15)


def _cli(action: str, job_id: str, redis_url: str, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(["monitor", "--redis", redis_url, action, job_id, *extra])
    return code, out.getvalue()


async def test_a_def_job_holding_the_loop_shows_its_progress(redis_url: str) -> None:
    release.clear()
    seen: list[tuple[StoredProgress | None, bool]] = []

    def look(job_id: str) -> None:
        """In a thread: the node's loop is held, so only the writer's thread can write."""
        redis = make_sync_client(redis_url)
        try:
            wait_until(lambda: redis.exists(progress_key("reactor", "prog-1", job_id)) == 1)
            seen.append((read_progress(redis, "reactor", "prog-1", job_id), release.is_set()))
        finally:
            release.set()
            redis.close()

    async with redis_node(redis_url) as (distributor, _node, _writer):
        handle = distributor.enqueue("holding", {})
        looker = threading.Thread(target=look, args=(handle.id,))
        looker.start()
        await asyncio.wait_for(handle, DEADLINE + 5)
        looker.join()
    stored, released = seen[0]
    assert not released  # seen while the job still held the loop
    assert stored is not None and stored.note == "holding the loop" and stored.fraction == 0.25


def _sets(redis_url: str) -> int:
    redis = make_sync_client(redis_url)
    try:
        stats = redis.info("commandstats")
    finally:
        redis.close()
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


async def test_a_thousand_reports_in_a_tight_loop_make_few_writes(redis_url: str) -> None:
    async with redis_node(redis_url) as (distributor, _node, writer):
        before = _sets(redis_url)
        await asyncio.wait_for(distributor.enqueue("chatty", {}), DEADLINE)
        began = time.monotonic()
        handle = distributor.enqueue("steady", {})
        await asyncio.wait_for(handle, DEADLINE * 2)
        took = time.monotonic() - began
        assert handle.progress == (1.0, None)  # every report was accepted, the last one sent
        await async_wait_until(lambda: writer.writes >= 1, DEADLINE)
        redis = make_sync_client(redis_url)
        try:
            await async_wait_until(lambda: not redis.keys("reactor:*:progress:*"), DEADLINE)
        finally:
            redis.close()
        sets = _sets(redis_url) - before
        # chatty: none (it ends within FIRST_WRITE_AFTER of its first report, or 1);
        # steady: at most one per second it ran, plus the first
        assert 1 <= sets <= 3 + took, (sets, took)  # measured: 4 SETs, 2.2 s, 2,000 reports
        assert writer.writes <= sets + 2  # the rest are the two DELs


def test_decode_progress_takes_garbage_as_no_progress() -> None:
    assert decode_progress(None) is None
    assert decode_progress(b"not json") is None
    assert decode_progress(b'{"fraction": "x"}') is None
    shown = decode_progress(b'{"fraction": 0.5, "note": 3, "at": 1.0, "attempt": 2}')
    assert shown is not None and shown.percent == 50 and shown.note is None


def test_a_memory_storage_node_stores_no_progress() -> None:
    assert ProgressWriter.of(MemoryStorage(), "n", 60.0) is None


def test_the_writer_coalesces_and_its_stop_deletes_what_it_wrote(redis_url: str) -> None:
    writer = ProgressWriter(redis_url, "reactor", "w", ttl=600)
    redis = make_sync_client(redis_url)
    try:
        for i in range(REPORTS):
            writer.offer("a", 1, i / REPORTS, None)
        wait_until(lambda: redis.exists(progress_key("reactor", "w", "a")) == 1)
        assert writer.writes <= 2  # the first report at once, the latest a second later
        assert 590 <= redis.ttl(progress_key("reactor", "w", "a")) <= 600
        writer.stop()
        assert redis.exists(progress_key("reactor", "w", "a")) == 0  # the node stops: gone
        writer.offer("b", 1, 0.5, None)  # after the stop: dropped
        assert writer.writes <= 3 and redis.exists(progress_key("reactor", "w", "b")) == 0
    finally:
        redis.close()


def test_an_unreachable_redis_is_logged_once_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = ProgressWriter(f"redis://127.0.0.1:{free_port()}/0", "reactor", "w", ttl=60)
    with caplog.at_level(logging.WARNING, logger="reactor.node"):
        writer.offer("a", 1, 0.5, "x")
        wait_until(lambda: writer.writes == 1)
        writer.end("a")
        writer.stop()
    warned = [r for r in caplog.records if "cannot store job progress" in r.getMessage()]
    assert len(warned) == 1 and writer.writes == 2  # the SET and the DEL were tried


def test_only_a_report_of_the_running_attempt_is_shown(redis_url: str) -> None:
    redis = make_sync_client(redis_url)
    try:
        redis.set(progress_key("reactor", "n", "j"), encode_progress(0.5, None, time.time(), 1))
        running = {"id": "j", "node": "n", "status": "in progress", "attempt": 1}
        shown = progress_of(redis, "reactor", running)
        assert shown is not None and shown.percent == 50
        assert progress_of(redis, "reactor", {**running, "attempt": 2}) is None  # a stale one
        assert progress_of(redis, "reactor", {**running, "status": "queued"}) is None
        assert progress_of(redis, "reactor", {**running, "id": "k"}) is None  # no key
    finally:
        redis.close()


def test_limits_read_as_one_line() -> None:
    assert describe_limits(["tenant:42", 2, "api", 10, 1, "tenant:42"]) == (
        "concurrency tenant:42: at most 2 running; rate api: at most 10 per second; "
        "fair key tenant:42"
    )
    assert describe_limits([None, 0, "api", 5, 60, None]) == "rate api: at most 5 per minute"
    assert describe_limits(None) is None and describe_limits("garbage") is None


async def test_the_job_page_and_monitor_show_say_what_a_queued_job_waits_for(
    redis_url: str,
) -> None:
    """Issue 20: a job waiting for a concurrency slot shows which limit it is under."""
    release.clear()
    dashboard, base = await asyncio.to_thread(start_dashboard, redis_url)
    limit = {"concurrency_key": "tenant:7", "concurrency_limit": 1}
    try:
        async with redis_node(redis_url) as (distributor, _node, _writer):
            first = distributor.enqueue("halfway", {}, **limit)  # holds the one slot
            second = distributor.enqueue("halfway", {}, **limit)
            redis = make_sync_client(redis_url, detect_cluster=True)
            try:
                key = progress_key("reactor", "prog-1", first.id)
                await async_wait_until(lambda: redis.exists(key) == 1, DEADLINE)
            finally:
                redis.close()
            page = await asyncio.to_thread(_get, f"{base}/jobs/{second.id}")
            assert 'id="limits"' in page, page
            assert "concurrency tenant:7: at most 1 running" in page
            code, out = await asyncio.to_thread(_cli, "show", second.id, redis_url)
            assert code == 0 and "concurrency tenant:7: at most 1 running" in out, out
            release.set()
            await asyncio.wait_for(asyncio.gather(first, second), DEADLINE)
    finally:
        dashboard.terminate()
        dashboard.communicate(timeout=15)
