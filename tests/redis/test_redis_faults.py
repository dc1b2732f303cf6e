"""Redis storage under faults (issue 10): failover, refusals, auth, cancellation, eviction, poison.

Every test runs against redis-server processes it starts itself on free loopback ports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis

from reactor.errors import PoisonedRecordsError, StorageAuthError, StorageUnavailableError
from reactor.jobs.record import QUEUED, JobRecord
from reactor.ops.monitor import RedisMonitor
from reactor.storage.redis import RedisStorage
from reactor.storage.redis_batch import Op
from reactor.testing.support import free_port
from tests.redis.conftest import ServerFactory, async_wait_until, make_job

pytestmark = pytest.mark.redis

Opener = Callable[..., Awaitable[RedisStorage]]
Poisoned = list[tuple[JobRecord | None, str, str]]


@pytest.fixture
async def open_redis() -> AsyncIterator[Opener]:
    """Open started RedisStorage instances (fast probes); all closed at teardown."""
    opened: list[RedisStorage] = []

    async def opener(url: str, node: str = "worker_1", **kw: Any) -> RedisStorage:
        kw = {"retry_base": 0.02, "retry_cap": 0.1, "stable_interval": 0.2, **kw}
        storage: RedisStorage = kw.pop("cls", RedisStorage)(url, **kw)
        opened.append(storage)
        await storage.start(node)
        return storage

    yield opener
    for storage in opened:
        await storage.close()


def collect(storage: RedisStorage) -> Poisoned:
    found: Poisoned = []
    storage.on_poisoned = lambda record, job_id, why: found.append((record, job_id, why))
    return found


# -- unavailability ----------------------------------------------------------------------------


async def test_a_demoted_primary_is_one_outage_and_acknowledges_nothing(
    make_redis_server: ServerFactory, open_redis: Opener
) -> None:
    primary, other = make_redis_server(), make_redis_server()
    storage = await open_redis(primary.url)
    await storage.add([make_job("before")])
    flips = 0

    async def watch() -> None:  # count available -> unavailable edges as the node would see them
        nonlocal flips
        was = storage.available
        while True:
            now = storage.available
            flips += was and not now
            was = now
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    acknowledged: list[str] = []
    try:
        with primary.client() as client:
            client.replicaof("127.0.0.1", other.port)  # a failover demotes it: writes get READONLY
            loop = asyncio.get_running_loop()
            deadline, n = loop.time() + 1.5, 0
            while loop.time() < deadline:  # jobs keep arriving during the outage
                job = make_job(f"during-{n}")
                n += 1
                try:
                    await storage.add([job])
                    acknowledged.append(job.id)
                except StorageUnavailableError:
                    pass
                await asyncio.sleep(0.01)
            assert not storage.available
            assert acknowledged == []  # a replica persists nothing we could acknowledge
            client.replicaof("no", "one")
            started = time.monotonic()
            await asyncio.wait_for(storage.wait_available(), 5)
            assert time.monotonic() - started >= 0.15  # two probes 0.2 s apart, not the first
            await storage.add([make_job("after")])
            assert client.hexists("reactor:{worker_1}:job:after", "id")
    finally:
        watcher.cancel()
    assert storage.outages == 1 and flips <= 2, (storage.outages, flips)


async def test_out_of_memory_is_unavailability_and_pending_updates_survive_it(
    make_redis_server: ServerFactory, open_redis: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reactor.storage")
    server = make_redis_server()
    storage = await open_redis(server.url)
    job = make_job("j")
    await storage.add([job])
    with server.client() as client:
        client.config_set("maxmemory", 1)  # below current usage: every write is refused (OOM)
        job.status = QUEUED
        storage.update(job)
        with pytest.raises(StorageUnavailableError, match="OutOfMemoryError"):
            await storage.add([make_job("k")])
        assert not storage.available  # the node stops taking jobs instead of flapping
        await async_wait_until(lambda: "Redis refuses writes at" in caplog.text, 5)
        client.config_set("maxmemory", 0)
        await asyncio.wait_for(storage.wait_available(), 5)
        await asyncio.wait_for(storage.flush(), 5)
        assert client.hget("reactor:{worker_1}:job:j", "status") == QUEUED.encode()
        assert not client.exists("reactor:{worker_1}:job:k")
    assert storage.outages == 1


# -- authentication and start ------------------------------------------------------------------


async def test_a_wrong_password_is_a_clear_error_at_once(make_redis_server: ServerFactory) -> None:
    server = make_redis_server(password="s3cret")
    for url in (server.url.replace("s3cret", "wrong-pw"), f"redis://127.0.0.1:{server.port}/0"):
        storage = RedisStorage(url, retry_base=0.02)
        started = time.monotonic()
        with pytest.raises(StorageAuthError, match="authentication") as info:
            await asyncio.wait_for(storage.start("worker_1"), 5)
        assert time.monotonic() - started < 1.0  # never retried
        assert "wrong-pw" not in str(info.value)
        assert not storage.available
        await storage.close()


async def test_an_acl_user_without_write_permission_is_an_auth_error(
    make_redis_server: ServerFactory,
) -> None:
    server = make_redis_server()
    with server.client() as client:
        client.acl_setuser(
            "reader", enabled=True, passwords=["+pw"], keys=["*"], categories=["+@read"]
        )
    storage = RedisStorage(f"redis://reader:pw@127.0.0.1:{server.port}/0")
    with pytest.raises(StorageAuthError, match="NoPermissionError") as info:
        await asyncio.wait_for(storage.start("worker_1"), 5)
    assert ":pw@" not in str(info.value)


async def test_start_waiting_for_an_unreachable_redis_is_cancellable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="reactor.storage")
    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0", retry_base=0.05, retry_cap=0.5)
    starting = asyncio.create_task(storage.start("worker_1"))
    await async_wait_until(lambda: "cannot reach Redis at" in caplog.text, 5)
    started = time.monotonic()
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(starting, 1.0)
    assert time.monotonic() - started < 1.0
    assert storage._redis is None and not storage.available  # nothing left open
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert not {n for n in names if n.startswith("reactor-redis")}


# -- eviction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "warned"), [("allkeys-lru", True), ("volatile-lru", False)])
async def test_an_evicting_maxmemory_policy_is_a_loud_warning(
    make_redis_server: ServerFactory,
    open_redis: Opener,
    caplog: pytest.LogCaptureFixture,
    policy: str,
    warned: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="reactor.storage")
    server = make_redis_server(extra_args=["--maxmemory-policy", policy])
    await open_redis(server.url)
    found = [r for r in caplog.records if "EVICTS keys" in r.getMessage()]
    assert bool(found) is warned
    if warned:
        assert found[0].levelno == logging.WARNING and "noeviction" in found[0].getMessage()


async def test_config_forbidden_by_acl_is_a_warning_not_a_failure(
    make_redis_server: ServerFactory, open_redis: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reactor.storage")
    server = make_redis_server()
    with server.client() as client:
        client.acl_setuser("app", enabled=True, passwords=["+pw"], keys=["*"],
                           categories=["+@all"], commands=["-config"])  # fmt: skip
    storage = await open_redis(f"redis://app:pw@127.0.0.1:{server.port}/0")
    assert storage.available
    assert "could not check Redis's maxmemory-policy" in caplog.text


# -- poisoned data ----------------------------------------------------------------------------


async def _bad_and_good(
    redis_url: str, open_redis: Opener
) -> tuple[RedisStorage, Poisoned, JobRecord, JobRecord]:
    """A storage holding jobs ``bad`` and ``good``, with ``bad``'s hash overwritten by a string
    (what the storage reports as poisoned is collected)."""
    storage = await open_redis(redis_url)
    poisoned = collect(storage)
    bad, good = make_job("bad"), make_job("good")
    await storage.add([bad, good])
    with redis.Redis.from_url(redis_url) as client:
        client.set("reactor:{worker_1}:job:bad", "not a hash")
    return storage, poisoned, bad, good


async def test_a_job_whose_hash_was_replaced_fails_alone_and_is_quarantined(
    redis_url: str, open_redis: Opener
) -> None:
    storage, poisoned, bad, good = await _bad_and_good(redis_url, open_redis)
    with redis.Redis.from_url(redis_url) as client:
        bad.status = good.status = QUEUED
        storage.update(bad)
        storage.update(good)
        await asyncio.wait_for(storage.flush(), 5)
        assert client.hget("reactor:{worker_1}:job:good", "status") == QUEUED.encode()
        assert [(r, i) for r, i, _why in poisoned] == [(bad, "bad")]
        assert "WRONGTYPE" in poisoned[0][2]
        assert not client.sismember("reactor:{worker_1}:jobs", "bad")
    assert storage.available and storage.outages == 0
    await storage.add([make_job("next")])  # the batch is not stuck
    with RedisMonitor(redis_url) as monitor:
        assert monitor.quarantined("worker_1")["bad"]["raw"] == "not a hash"


class _OneBadRow(RedisStorage):
    """Encodes job ``bad`` as a malformed row, as a record Redis cannot take."""

    def _rows(self, ops: list[tuple[str, Op]]) -> list[tuple[list[bytes | str], list[str]]]:
        rows = super()._rows(ops)
        return [
            (p[:-1], n) if i == "bad" else (p, n) for (i, _), (p, n) in zip(ops, rows, strict=True)
        ]


async def test_add_stores_the_good_jobs_and_names_the_poisoned_ones(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url, cls=_OneBadRow)
    jobs = [make_job("a"), make_job("bad"), make_job("c")]
    with pytest.raises(PoisonedRecordsError) as info:
        await asyncio.wait_for(storage.add(jobs), 5)
    assert list(info.value.failed) == ["bad"]
    assert await storage.exists(jobs) == [True, False, True]
    with redis.Redis.from_url(redis_url) as client:
        assert client.smembers("reactor:{worker_1}:jobs") == {b"a", b"c"}
    await storage.add([make_job("d")])
    assert storage.available


async def test_corrupt_records_are_quarantined_at_resume(
    redis_url: str, open_redis: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reactor.storage")
    storage = await open_redis(redis_url)
    await storage.add(
        [make_job(f"ok-{i}") for i in range(3)] + [make_job(f"x{i}") for i in range(4)]
    )
    with redis.Redis.from_url(redis_url) as client:
        key = "reactor:{worker_1}:job:"
        client.delete(f"{key}x0")
        client.set(f"{key}x0", "a string")
        client.hdel(f"{key}x1", "name")
        client.hset(f"{key}x2", "run_at", "soon")
        client.hset(f"{key}x3", "status", "sleeping")
        client.delete(f"{key}ok-2")  # vanished (evicted): its index entry is dropped
        client.hset(f"{key}ok-1", "status", "in progress")
        client.hset("reactor:job-node", "x3", "worker_2")  # reassigned since: keep that entry
    restarted = await open_redis(redis_url)
    poisoned = collect(restarted)
    resumed = await asyncio.wait_for(restarted.unfinished(), 5)
    assert sorted(j.id for j in resumed) == ["ok-0", "ok-1"]
    assert sorted(i for _r, i, _w in poisoned) == ["x0", "x1", "x2", "x3"]
    with RedisMonitor(redis_url) as monitor:
        shown = monitor.quarantined("worker_1")
        assert monitor.node_of("x0") is None and monitor.node_of("x3") == "worker_2"
    with redis.Redis.from_url(redis_url) as client:
        assert client.smembers("reactor:{worker_1}:jobs") == {b"ok-0", b"ok-1"}
    assert "1 records of node worker_1 vanished without a destroy" in caplog.text
    assert set(shown) == {"x0", "x1", "x2", "x3"}
    assert "WRONGTYPE" in shown["x0"]["reason"] and shown["x0"]["raw"] == "a string"
    assert shown["x1"]["reason"] == "no name field" and shown["x1"]["raw"]["id"] == "x1"
    assert "undecodable" in shown["x2"]["reason"] and shown["x2"]["type"] == "hash"
    assert "sleeping" in shown["x3"]["reason"]
    again = await open_redis(redis_url)
    assert len(await again.unfinished()) == 2  # the next restart is clean
    assert collect(again) == []


# -- tombstones -------------------------------------------------------------------------------


async def test_destroy_leaves_a_tombstone_the_node_can_ask_about(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url)
    jobs = [make_job("destroyed"), make_job("lost"), make_job("alive")]
    await storage.add(jobs)
    with RedisMonitor(redis_url) as monitor:
        assert monitor.destroy("destroyed")
    with redis.Redis.from_url(redis_url) as client:
        client.delete("reactor:{worker_1}:job:lost")  # vanished without a destroy
        ttl = client.ttl("reactor:{worker_1}:destroyed:destroyed")
    assert 7 * 86400 - 60 < ttl <= 7 * 86400
    assert await storage.exists(jobs) == [False, False, True]  # exists() is unchanged
    assert await storage.tombstoned(jobs) == [True, False, False]
    assert await storage.tombstoned([]) == []


async def test_destroy_all_jobs_for_a_node_leaves_tombstones(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url)
    jobs = [make_job(f"j{i}") for i in range(5)]
    await storage.add(jobs)
    with RedisMonitor(redis_url) as monitor:
        assert monitor.destroy_all_jobs_for("worker_1") == 5
    assert await storage.tombstoned(jobs) == [True] * 5


async def test_a_corrupt_index_key_is_named_unavailability_until_fixed(
    redis_url: str, open_redis: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reactor.storage")
    storage = await open_redis(redis_url)
    await storage.add([make_job("a")])
    with redis.Redis.from_url(redis_url) as client:
        client.delete("reactor:{worker_1}:jobs")
        client.set("reactor:{worker_1}:jobs", "oops")  # no job explains this one: not poison
        with pytest.raises(StorageUnavailableError, match="WRONGTYPE"):
            await asyncio.wait_for(storage.add([make_job("b")]), 5)
        await async_wait_until(lambda: "key reactor:{worker_1}:jobs holds" in caplog.text, 5)
        assert not storage.available
        client.delete("reactor:{worker_1}:jobs")
    await asyncio.wait_for(storage.wait_available(), 5)
    await storage.add([make_job("c")])
    assert await storage.exists([make_job("c")]) == [True]


# -- write-ahead attempts ---------------------------------------------------------------------


async def test_a_write_ahead_names_a_poisoned_job_and_writes_the_others(
    redis_url: str, open_redis: Opener
) -> None:
    storage, poisoned, bad, good = await _bad_and_good(redis_url, open_redis)
    with redis.Redis.from_url(redis_url) as client:
        for job in (bad, good):
            job.status, job.attempt = "in progress", 1
        written = storage.write_ahead([bad, good])
        assert written is not None
        with pytest.raises(PoisonedRecordsError) as caught:
            await asyncio.wait_for(written, 5)
        assert set(caught.value.failed) == {"bad"}
        assert client.hget("reactor:{worker_1}:job:good", "status") == b"in progress"
        await async_wait_until(lambda: [i for _r, i, _w in poisoned] == ["bad"], 5)
    with RedisMonitor(redis_url) as monitor:
        assert monitor.quarantined("worker_1")["bad"]["raw"] == "not a hash"


async def test_a_write_ahead_waits_out_an_outage_instead_of_failing(
    make_redis_server: ServerFactory, open_redis: Opener
) -> None:
    server = make_redis_server()
    storage = await open_redis(server.url)
    job = make_job("j")
    await storage.add([job])
    server.kill()
    job.status, job.attempt = "in progress", 1
    written = storage.write_ahead([job])
    assert written is not None
    await async_wait_until(lambda: not storage.available, 5)
    assert not written.done(), "a write-ahead must not fail while Redis is away"
    server.restart()
    await asyncio.wait_for(written, 10)
    with server.client() as client:
        assert client.hget("reactor:{worker_1}:job:j", "attempt") == b"1"


async def test_a_write_ahead_writes_what_a_start_changes_and_an_update_the_rest(
    redis_url: str, open_redis: Opener
) -> None:
    storage = await open_redis(redis_url)
    job = make_job("j")
    await storage.add([job])
    job.status, job.attempt, job.run_at = "in progress", 1, 1_800_000_000.5
    job.last_error = "not part of a start"
    written = storage.write_ahead([job])
    assert written is not None
    await asyncio.wait_for(written, 5)
    with redis.Redis.from_url(redis_url) as client:
        stored = client.hgetall("reactor:{worker_1}:job:j")
        assert stored[b"status"] == b"in progress" and stored[b"attempt"] == b"1"
        assert stored[b"run_at"] == b"1800000000.5" and b"last_error" not in stored
        storage.update(job)  # an update pending when a write-ahead comes writes everything
        again = storage.write_ahead([job])
        assert again is not None
        await asyncio.wait_for(again, 5)
        assert client.hget("reactor:{worker_1}:job:j", "last_error") == b"not part of a start"
