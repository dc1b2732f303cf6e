"""Redis storage beyond the common contract: key layout, batching, outages, passwords, scale."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis

from reactor.errors import ConfigError, StorageUnavailableError
from reactor.jobs.record import CANCELLED, COMPLETE, ERROR, FAILED, IN_PROGRESS, NEW, QUEUED
from reactor.ops.monitor import RedisMonitor
from reactor.storage.redis import RedisStorage
from tests.redis.conftest import ServerFactory, async_wait_until, make_job

pytestmark = pytest.mark.redis

Opener = Callable[..., Awaitable[RedisStorage]]


@pytest.fixture
async def open_redis() -> AsyncIterator[Opener]:
    """Open started RedisStorage instances (fast reconnects); all closed at teardown."""
    opened: list[RedisStorage] = []

    async def opener(url: str, node: str = "worker_1", **kw: Any) -> RedisStorage:
        storage = RedisStorage(url, retry_base=0.05, retry_cap=0.2, **kw)
        opened.append(storage)
        await storage.start(node)
        return storage

    yield opener
    for storage in opened:
        await storage.close()


def command_calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


async def test_key_layout_and_field_encoding(redis_url: str, open_redis: Opener) -> None:
    storage = await open_redis(redis_url, "worker_1")
    await storage.add([make_job("j1", period=None, defer=True, run_at=1_700_000_020.125)])
    with redis.Redis.from_url(redis_url) as client:
        raw = client.hgetall("reactor:{worker_1}:job:j1")
        assert raw[b"run_at"] == b"1700000020.125"
        assert raw[b"defer"] == b"1" and raw[b"attempt"] == b"0"
        assert raw[b"args"] == b"\x81\xa4arg1\x01"
        assert b"period" not in raw and b"last_error" not in raw  # None: absent, not ""
        assert client.smembers("reactor:{worker_1}:jobs") == {b"j1"}
        assert client.hget("reactor:job-node", "j1") == b"worker_1"
        assert client.smembers("reactor:nodes") == {b"worker_1"}
    storage.remove(make_job("j1"))
    await storage.flush()
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys("*") == [b"reactor:nodes"]


async def test_job_options_are_stored_only_when_set(redis_url: str, open_redis: Opener) -> None:
    storage = await open_redis(redis_url, "worker_1")
    options = {"timeout": 2.5, "max_attempt": 3, "cron": "30 2 * * *", "tz": "Europe/Paris"}
    await storage.add([make_job("plain"), make_job("opts", priority=-4, **options)])
    with redis.Redis.from_url(redis_url) as client:
        plain = client.hgetall("reactor:{worker_1}:job:plain")
        opts = client.hgetall("reactor:{worker_1}:job:opts")
    assert not {b"timeout", b"max_attempt", b"cron", b"tz", b"priority"} & plain.keys()
    assert opts[b"timeout"] == b"2.5" and opts[b"max_attempt"] == b"3"
    assert opts[b"cron"] == b"30 2 * * *" and opts[b"tz"] == b"Europe/Paris"
    assert opts[b"priority"] == b"-4"


async def test_custom_prefix(redis_url: str, open_redis: Opener) -> None:
    storage = await open_redis(redis_url, "w", prefix="myapp")
    await storage.add([make_job("j1")])
    with redis.Redis.from_url(redis_url) as client:
        assert client.exists("myapp:{w}:job:j1", "myapp:{w}:jobs", "myapp:job-node") == 3
        assert not client.keys("reactor:*")


async def test_a_thousand_concurrent_adds_share_few_pipelines(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url)
    jobs = [make_job(f"b-{i}") for i in range(1000)]
    with redis.Redis.from_url(redis_url) as client:
        client.config_resetstat()
        before = storage.batches
        await asyncio.gather(*(storage.add([job]) for job in jobs))
        batches = storage.batches - before
        assert 1 <= batches <= 2, batches
        # One EVALSHA writes a pipeline's new jobs (up to 1000), one SADD indexes them.
        assert command_calls(client, "evalsha") == batches
        assert command_calls(client, "sadd") == 2 * batches  # index + nodes set
        assert client.scard("reactor:{worker_1}:jobs") == 1000


async def test_updates_to_one_job_coalesce_and_the_latest_wins(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url)
    job = make_job("hot")
    await storage.add([job])
    with redis.Redis.from_url(redis_url) as client:
        client.config_resetstat()
        for attempt in range(100):
            job.attempt = attempt
            storage.update(job)
        await storage.flush()
        assert command_calls(client, "evalsha") == 1
        assert client.hget("reactor:{worker_1}:job:hot", "attempt") == b"99"


async def test_exists_sees_writes_queued_before_it(redis_url: str, open_redis: Opener) -> None:
    storage = await open_redis(redis_url)
    a, b = make_job("a"), make_job("b")
    await storage.add([a, b])
    storage.remove(a)  # no flush: exists() goes out after it in the same pipeline
    assert await storage.exists([a, b]) == [False, True]


async def test_a_record_deleted_by_the_monitor_is_not_brought_back(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url)
    job = make_job("periodic", period=60.0)
    await storage.add([job])
    with RedisMonitor(redis_url) as monitor:
        assert monitor.destroy("periodic")
    job.status = QUEUED  # the node reschedules the job after a run...
    storage.update(job)
    await storage.flush()
    assert await storage.exists([job]) == [False]  # ...but the cancellation sticks
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists("reactor:{worker_1}:job:periodic")


async def test_writes_recover_when_redis_forgot_its_scripts(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url)
    job = make_job("j")
    await storage.add([job])
    with redis.Redis.from_url(redis_url) as client:
        client.script_flush()
        job.status = IN_PROGRESS
        storage.update(job)
        await storage.add([make_job("k")])
        await storage.flush()
        assert client.hget("reactor:{worker_1}:job:j", "status") == IN_PROGRESS.encode()
    restarted = await open_redis(redis_url)
    with redis.Redis.from_url(redis_url) as client:
        client.script_flush()
    assert sorted(j.id for j in await restarted.unfinished()) == ["j", "k"]


async def test_close_writes_pending_updates(redis_url: str, open_redis: Opener) -> None:
    storage = await open_redis(redis_url)
    job = make_job("j")
    await storage.add([job])
    job.status = QUEUED
    storage.update(job)
    await storage.close()
    assert not storage.available
    (back,) = await (await open_redis(redis_url)).unfinished()
    assert back.status == QUEUED


async def test_redis_killed_and_restarted(
    make_redis_server: ServerFactory, open_redis: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reactor.storage")
    server = make_redis_server()
    storage = await open_redis(server.url)
    kept = make_job("kept")
    await storage.add([kept])
    await asyncio.to_thread(server.kill)
    kept.status = IN_PROGRESS
    storage.update(kept)
    with pytest.raises(StorageUnavailableError, match="unavailable"):
        await storage.add([make_job("refused")])
    assert not storage.available
    with pytest.raises(StorageUnavailableError):
        await storage.add([make_job("refused-fast")])  # known down: fails without trying
    with pytest.raises(StorageUnavailableError):
        await storage.exists([kept])
    kept.status, kept.attempt = QUEUED, 2
    storage.update(kept)  # queued while Redis is down: kept and retried, never dropped
    assert "is unavailable (ConnectionError" in caplog.text

    await asyncio.to_thread(server.restart)
    await asyncio.wait_for(storage.wait_available(), 10)
    assert storage.available
    await asyncio.wait_for(storage.flush(), 10)
    assert "takes writes again" in caplog.text

    resumed = {j.id: j for j in await (await open_redis(server.url)).unfinished()}
    assert set(resumed) == {"kept"}  # refused adds were never acknowledged, so not stored
    assert (resumed["kept"].status, resumed["kept"].attempt) == (QUEUED, 2)
    await storage.add([make_job("after")])  # and the storage takes jobs again
    assert await storage.exists([make_job("after")]) == [True]


async def test_start_retries_until_redis_is_up(
    make_redis_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reactor.storage")
    server = make_redis_server(start=False)
    storage = RedisStorage(server.url, retry_base=0.05, retry_cap=0.2)
    starting = asyncio.create_task(storage.start("worker_1"))
    try:
        await async_wait_until(lambda: "cannot reach Redis at" in caplog.text, 10)
        assert f"redis://127.0.0.1:{server.port}/0 (ConnectionError" in caplog.text
        assert not starting.done() and not storage.available
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(starting, 10)
        assert storage.available
        await storage.add([make_job("j")])
    finally:
        starting.cancel()
        await storage.close()


async def test_password_in_url(
    make_redis_server: ServerFactory, open_redis: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server(password="s3cret pw")
    assert server.url == f"redis://:s3cret%20pw@127.0.0.1:{server.port}/0"
    storage = await open_redis(server.url)
    await storage.add([make_job("j")])
    assert await storage.exists([make_job("j")]) == [True]
    with RedisMonitor(server.url) as monitor:
        assert monitor.load("j") is not None
    # a wrong password: see test_redis_faults.test_a_wrong_password_is_a_clear_error_at_once


def test_bad_urls_and_node_names_fail_fast() -> None:
    with pytest.raises(ConfigError, match="bad Redis URL"):
        RedisStorage("redis://127.0.0.1:6379/0?socket_timeout=soon")
    storage = RedisStorage("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="braces"):
        asyncio.run(storage.start("bad{name}"))


async def test_ten_thousand_jobs(redis_url: str, open_redis: Opener) -> None:
    storage = await open_redis(redis_url)
    open_statuses, done_statuses = (NEW, IN_PROGRESS, QUEUED, ERROR), (COMPLETE, FAILED, CANCELLED)
    jobs = [make_job(f"{i:032x}", status=open_statuses[i % 4], run_at=i / 3) for i in range(10_000)]
    jobs += [make_job(f"done-{i}", status=done_statuses[i % 3]) for i in range(1_000)]

    started = time.perf_counter()
    await asyncio.gather(*(storage.add(jobs[i : i + 100]) for i in range(0, 10_000, 100)))
    took = time.perf_counter() - started
    print(f"\nadd(): 10,000 jobs in {took:.3f}s ({10_000 / took:,.0f} jobs/s, in 100-job calls)")
    await storage.add(jobs[10_000:])

    restarted = await open_redis(redis_url)
    started = time.perf_counter()
    resumed = await restarted.unfinished()
    took = time.perf_counter() - started
    print(f"unfinished(): {len(resumed):,} of 11,000 stored jobs in {took:.3f}s")
    assert {j.id for j in resumed} == {j.id for j in jobs[:10_000]}
    assert [j.run_at for j in resumed] == sorted(j.run_at for j in resumed)


async def test_removing_a_job_reassigned_elsewhere_keeps_its_new_mapping(
    redis_url: str, open_redis: Opener
) -> None:
    old, new = await open_redis(redis_url, "old"), await open_redis(redis_url, "new")
    job = make_job("moved")
    await old.add([job])
    await new.add([make_job("moved")])  # the lost node's job, reassigned
    old.remove(job)  # the old node comes back and drops its stale copy
    await old.flush()
    with RedisMonitor(redis_url) as monitor:
        assert monitor.node_of("moved") == "new"
