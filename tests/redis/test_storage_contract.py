"""One suite for every storage backend: what the node may rely on, whichever it is given."""

from __future__ import annotations

import asyncio

from reactor.jobs.record import (
    CANCELLED,
    COMPLETE,
    ERROR,
    FAILED,
    IN_PROGRESS,
    NEW,
    QUEUED,
    STATUSES,
    JobRecord,
)
from reactor.storage.memory import MemoryStorage
from reactor.storage.redis import RedisStorage
from tests.redis.conftest import StorageOpener as Opener
from tests.redis.conftest import make_job


def same(a: JobRecord, b: JobRecord) -> None:
    assert a.to_dict() == b.to_dict()
    for field, value in a.to_dict().items():
        assert type(getattr(b, field)) is type(value), field


async def test_added_jobs_exist_and_unknown_ones_do_not(open_storage: Opener) -> None:
    storage = await open_storage()
    jobs = [make_job(f"job-{i}") for i in range(3)]
    await storage.add(jobs)
    assert await storage.exists([*jobs, make_job("never-added")]) == [True, True, True, False]
    assert await storage.exists([]) == []


async def test_remove_forgets_a_job(open_storage: Opener) -> None:
    storage = await open_storage()
    keep, drop = make_job("keep"), make_job("drop")
    await storage.add([keep, drop])
    storage.remove(drop)
    await storage.flush()
    assert await storage.exists([keep, drop]) == [True, False]


async def test_remove_after_update_wins(open_storage: Opener) -> None:
    storage = await open_storage()
    job = make_job("j")
    await storage.add([job])
    job.status = IN_PROGRESS
    storage.update(job)
    job.status = COMPLETE
    storage.remove(job)
    await storage.flush()
    assert await storage.exists([job]) == [False]


async def test_concurrent_adds_all_land(open_storage: Opener) -> None:
    storage = await open_storage()
    jobs = [make_job(f"c-{i}") for i in range(300)]
    await asyncio.gather(*(storage.add([job]) for job in jobs))
    assert await storage.exists(jobs) == [True] * len(jobs)


async def test_unfinished_is_exactly_new_in_progress_queued_and_error(open_storage: Opener) -> None:
    storage = await open_storage()
    jobs = {status: make_job(f"job-{status}", status=status) for status in STATUSES}
    await storage.add(list(jobs.values()))
    await storage.flush()
    if not storage.durable:
        # Memory storage forgets everything when the node stops: nothing to resume.
        assert isinstance(storage, MemoryStorage)
        assert await storage.unfinished() == []
        return
    restarted = await open_storage()
    resumed = {job.status: job for job in await restarted.unfinished()}
    assert set(resumed) == {NEW, IN_PROGRESS, QUEUED, ERROR}
    assert not set(resumed) & {COMPLETE, FAILED, CANCELLED}
    for status, job in resumed.items():
        same(jobs[status], job)


async def test_updates_survive_a_restart_with_every_type_kept(open_storage: Opener) -> None:
    storage = await open_storage()
    job = make_job("typed", period=0.5, make_after=2.75, defer=True)
    await storage.add([job])
    job.status, job.attempt, job.seq = ERROR, 3, 7
    job.run_at = 1_700_000_123.456789
    job.failed_at = 1_700_000_100.000001
    job.last_error = "ZeroDivisionError: division by zero ✗"
    job.args = bytes(range(256))  # not valid UTF-8: must come back byte for byte
    storage.update(job)
    await storage.flush()
    if not storage.durable:
        assert await storage.unfinished() == []
        assert await storage.exists([job]) == [True]
        return
    (back,) = await (await open_storage()).unfinished()
    same(job, back)
    assert back.run_at == 1_700_000_123.456789 and back.period == 0.5
    assert back.args == bytes(range(256))


async def test_job_options_survive_a_restart(open_storage: Opener) -> None:
    storage = await open_storage()
    options = {"timeout": 2.5, "max_attempt": 3, "cron": "30 2 * * *", "tz": "Europe/Paris"}
    job = make_job("opts", priority=-4, **options)
    plain = make_job("plain")
    await storage.add([job, plain])
    job.status, job.attempt = ERROR, 1
    storage.update(job)
    await storage.flush()
    if not storage.durable:
        assert await storage.exists([job, plain]) == [True, True]
        return
    back = {r.id: r for r in await (await open_storage()).unfinished()}
    same(job, back["opts"])
    same(plain, back["plain"])
    assert back["opts"].cron == "30 2 * * *" and back["opts"].priority == -4
    assert back["plain"].timeout is None and back["plain"].priority == 0


async def test_tags_and_trace_survive_a_restart_and_cost_a_plain_job_nothing(
    open_storage: Opener,
) -> None:
    storage = await open_storage()
    trace = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    tagged = make_job("tagged", tags=["billing", "tenant:42", "é"], trace=trace)
    only_tags = make_job("only-tags", tags=["eu"])
    plain = make_job("plain")
    await storage.add([tagged, only_tags, plain])
    tagged.status = only_tags.status = ERROR
    storage.update(tagged)
    storage.update(only_tags)
    await storage.flush()
    if not storage.durable:
        assert await storage.exists([tagged, only_tags, plain]) == [True] * 3
        return
    back = {r.id: r for r in await (await open_storage()).unfinished()}
    same(tagged, back["tagged"])
    assert back["tagged"].tags == ["billing", "tenant:42", "é"]
    assert back["tagged"].trace == trace
    assert back["only-tags"].tags == ["eu"] and back["only-tags"].trace is None
    assert back["plain"].tags is None and back["plain"].trace is None
    if isinstance(storage, RedisStorage):
        fields = await _raw_fields(storage, plain)
        assert not fields & {b"tags", b"trace"}  # a plain job stores no option fields


async def _raw_fields(storage: RedisStorage, job: JobRecord) -> set[bytes]:
    """The field names Redis holds for ``job``'s record."""
    from reactor.ops.monitor import RedisMonitor
    from reactor.storage.redis_layout import job_key

    with RedisMonitor(storage.url) as monitor:
        return set(monitor.redis.hgetall(job_key(monitor.prefix, job.node, job.id)).keys())


async def test_none_stays_none(open_storage: Opener) -> None:
    storage = await open_storage()
    job = make_job("nones", period=None, failed_at=1.5, last_error="boom")
    await storage.add([job])
    job.failed_at, job.last_error = None, None  # a later update clears them
    storage.update(job)
    await storage.flush()
    if not storage.durable:
        assert await storage.unfinished() == []
        return
    (back,) = await (await open_storage()).unfinished()
    assert back.period is None and back.failed_at is None and back.last_error is None
    same(job, back)


async def test_update_writes_the_latest_state(open_storage: Opener) -> None:
    storage = await open_storage()
    job = make_job("snap")
    await storage.add([job])
    job.status = QUEUED
    storage.update(job)
    job.attempt = 3  # changed before the write went out: the write carries the latest state
    await storage.flush()
    if not storage.durable:
        assert await storage.exists([job]) == [True]
        return
    (back,) = await (await open_storage()).unfinished()
    assert back.status == QUEUED and back.attempt == 3


async def test_jobs_of_other_nodes_are_not_resumed(open_storage: Opener) -> None:
    mine, theirs = await open_storage("node"), await open_storage("node_2")
    await mine.add([make_job("a")])
    await theirs.add([make_job("b")])
    assert await mine.exists([make_job("b")]) == [False]
    if mine.durable:
        assert [j.id for j in await (await open_storage("node")).unfinished()] == ["a"]
        assert [j.id for j in await (await open_storage("node_2")).unfinished()] == ["b"]
    else:
        assert await mine.unfinished() == []


async def test_flush_with_nothing_pending_returns(open_storage: Opener) -> None:
    storage = await open_storage()
    await asyncio.wait_for(storage.flush(), 5)
    assert storage.available
