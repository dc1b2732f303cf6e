"""Issue 4 end to end: node processes with Redis storage, crashes, restarts and the monitor."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import pytest

from reactor import Config, Distributor, JobCancelledError, JobFailed
from reactor.ops.monitor import RedisMonitor
from reactor.testing.redis_server import RedisServer
from reactor.testing.support import async_wait_until

from ..conftest import NodeFactory, Recorder, lines, wait_for_node

pytestmark = pytest.mark.redis


async def _node(
    d: Distributor, start_node: NodeFactory, name: str, url: str, **settings: object
) -> object:
    proc = start_node(name, [d.address], storage=url, settings=settings)
    await wait_for_node(d, name, proc=proc)
    return proc


async def test_deferred_job_shows_in_monitor_and_destroy_keeps_it_from_running(
    distributor: Distributor, start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    await _node(distributor, start_node, "w1", redis_url)
    path = tmp_path / "ran.txt"
    handle = distributor.enqueue("record", {"path": str(path), "tag": "x"}, after=1.5)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(lambda: handle.id in monitor.jobs_for("w1"), 5)
        record = monitor.load(handle.id)
        assert record is not None
        assert record["status"] in ("new", "queued") and record["args"]["tag"] == "x"
        assert record["node"] == "w1" and record["name"] == "record"
        assert monitor.destroy(handle.id) is True
        assert monitor.load(handle.id) is None
    await asyncio.sleep(2.0)  # the assertion's window: past the due time, it would have run
    assert not path.exists()


async def test_retention_defaults_and_failed_record(
    distributor: Distributor, start_node: NodeFactory, redis_url: str
) -> None:
    await _node(distributor, start_node, "w1", redis_url, max_attempt=2, retry_multiplier=0)
    done = await asyncio.wait_for(distributor.enqueue("record", {}), 10)
    failing = distributor.enqueue("failing", {"path": "/dev/null"})
    with pytest.raises(JobFailed):
        await asyncio.wait_for(failing, 10)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(
            lambda: (monitor.load(failing.id) or {}).get("status") == "failed", 5
        )
        jobs = monitor.jobs_for("w1")
        assert list(jobs) == [failing.id], "a done job's record should be gone by default"
        record = jobs[failing.id]
        assert record["attempt"] == 2
        assert record["last_error"].startswith("NameError")
        assert isinstance(record["failed_at"], float)
    assert done["result"] == "ok"


async def test_remove_done_jobs_false_keeps_complete(
    distributor: Distributor, start_node: NodeFactory, redis_url: str
) -> None:
    await _node(distributor, start_node, "w1", redis_url, remove_done_jobs=False)
    handle = distributor.enqueue("record", {"k": 1.25})
    await asyncio.wait_for(handle, 10)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(
            lambda: (monitor.load(handle.id) or {}).get("status") == "complete", 5
        )
        record = monitor.load(handle.id)
        assert record is not None and record["args"]["k"] == 1.25 and record["attempt"] == 1


async def test_sigkilled_node_resumes_a_deferred_job_on_time_once(
    distributor: Distributor, start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    node = await _node(distributor, start_node, "w1", redis_url)
    path = tmp_path / "ran.txt"
    enqueued = time.time()
    handle = distributor.enqueue("record", {"path": str(path)}, after=4)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(lambda: handle.id in monitor.jobs_for("w1"), 5)
    node.kill()  # type: ignore[attr-defined]
    await _node(distributor, start_node, "w1", redis_url)
    result = await asyncio.wait_for(handle, 10)
    assert 4.0 - 0.01 <= result["started"] - enqueued < 4.6
    await asyncio.sleep(0.3)  # the assertion's window: a second run would have written by now
    assert len(lines(path)) == 1


async def test_job_killed_mid_run_runs_again_with_one_success_feedback(
    distributor: Distributor, start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    node = await _node(distributor, start_node, "w1", redis_url)
    path = tmp_path / "starts.txt"
    ok = Recorder()
    handle = distributor.enqueue("async_sleep", {"seconds": 1.0, "path": str(path)}, on_success=ok)
    await async_wait_until(lambda: len(lines(path)) == 1, 10)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(
            lambda: (monitor.load(handle.id) or {}).get("status") == "in progress", 5
        )
    node.kill()  # type: ignore[attr-defined]
    await _node(distributor, start_node, "w1", redis_url)
    result = await asyncio.wait_for(handle, 15)
    assert len(lines(path)) == 2, "the interrupted job should have run again"
    await asyncio.sleep(0.3)  # the assertion's window: a second success feedback would be here
    assert len(ok.calls) == 1 and ok.args[0] == result


async def test_node_keeps_working_across_a_redis_kill_and_restart(
    distributor: Distributor,
    start_node: NodeFactory,
    make_redis_server,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    server: RedisServer = make_redis_server()
    await _node(distributor, start_node, "w1", server.url)
    path = tmp_path / "ran.txt"
    deferred = distributor.enqueue("record", {"path": str(path), "tag": "deferred"}, after=2.5)
    assert (await asyncio.wait_for(distributor.enqueue("record", {}), 10))["result"] == "ok"
    with RedisMonitor(server.url) as monitor:
        await async_wait_until(lambda: deferred.id in monitor.jobs_for("w1"), 5)
    server.kill()
    during = [distributor.enqueue("record", {"path": str(path), "tag": f"d{i}"}) for i in range(5)]
    await asyncio.sleep(1.0)  # the fault: Redis stays down for a second while jobs arrive
    server.restart()
    await asyncio.wait_for(asyncio.gather(*during), 20)
    await asyncio.wait_for(deferred, 10)
    tags = sorted(line.split()[0] for line in lines(path))
    assert tags == sorted(["deferred", *(f"d{i}" for i in range(5))])


async def test_destroy_all_jobs_for_leaves_other_nodes_alone(
    distributor: Distributor, start_node: NodeFactory, redis_url: str
) -> None:
    await _node(distributor, start_node, "node", redis_url)
    await _node(distributor, start_node, "node_2", redis_url)
    mine = [distributor.enqueue("record", {}, after=30, node="node") for _ in range(3)]
    theirs = [distributor.enqueue("record", {}, after=30, node="node_2") for _ in range(3)]
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(
            lambda: len(monitor.jobs_for("node")) == 3 and len(monitor.jobs_for("node_2")) == 3, 5
        )
        assert monitor.destroy_all_jobs_for("node") == 3
        assert monitor.jobs_for("node") == {}
        assert set(monitor.jobs_for("node_2")) == {h.id for h in theirs}
    for handle in mine + theirs:
        handle.cancel()


async def test_restart_with_ten_thousand_stored_deferred_jobs(
    start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    config = Config(heartbeat_interval=0.2, heartbeat_timeout=5.0, log_job_processing=False)
    async with Distributor("127.0.0.1", 0, config=config) as d:
        node = await _node(d, start_node, "bulk", redis_url)
        handles = [d.enqueue("record", {"i": i}, after=120) for i in range(10_000)]
        with RedisMonitor(redis_url) as monitor:
            await async_wait_until(lambda: monitor.counts("bulk").get("new", 0) == 10_000, 30)
        node.kill()  # type: ignore[attr-defined]
        began = time.monotonic()
        again = start_node("bulk", [d.address], storage=redis_url)
        pattern = re.compile(r"resumed (\d+) stored jobs")
        await async_wait_until(lambda: pattern.search(again.output()) is not None, 30)
        took = time.monotonic() - began
        match = pattern.search(again.output())
        assert match is not None and int(match.group(1)) == 10_000
        print(
            f"restart with 10,000 stored deferred jobs: resumed in {took:.2f}s "
            "(process start included)"
        )
        for handle in handles[:10]:
            handle.cancel()


async def test_a_cron_job_resumes_after_its_node_restarts(
    distributor: Distributor, start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    first = start_node("w1", [distributor.address], storage=redis_url)
    await wait_for_node(distributor, "w1", proc=first)
    path = tmp_path / "ticks.txt"
    handle = distributor.enqueue("cron_tick", {"path": str(path)}, cron="* * * * * */1")
    await async_wait_until(lambda: len(lines(path)) >= 2, 10)
    first.signal(signal.SIGKILL)
    first.wait(10)
    seen = len(lines(path))
    second = start_node("w1", [distributor.address], storage=redis_url)
    await wait_for_node(distributor, "w1", proc=second)
    await async_wait_until(lambda: len(lines(path)) >= seen + 2, 15)
    assert not handle.done()
    handle.cancel()
    with pytest.raises(JobCancelledError):
        await asyncio.wait_for(handle, 10)
