"""Write-ahead attempts against a real redis-server (issue 10): a crash counts as an attempt.

The attempt number and ``in progress`` reach Redis before a job's body starts, so a job killed
with its node runs again with the next attempt number, and a job that kills its node every time
fails after ``max_attempt`` crashes with error feedback instead of crash-looping it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reactor import Config, Distributor, JobFailed, Node
from reactor.jobs.registry import JobRegistry
from reactor.node.write_ahead import MAX_AHEAD
from reactor.ops.monitor import RedisMonitor
from reactor.testing import NodeProcess, async_wait_until

from ..conftest import NodeFactory, Recorder, lines, wait_for_node

pytestmark = pytest.mark.redis

SETTINGS = {"merge_job_itself_to_args": True, "max_attempt": 3, "retry_multiplier": 0}


@pytest.fixture(params=["redis", "redis-cluster"])
def url(request: pytest.FixtureRequest) -> str:
    """One Redis, then a 3-master Redis Cluster: the node behaves the same on both."""
    return str(
        request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    )


async def _start(d: Distributor, start_node: NodeFactory, url: str) -> NodeProcess:
    proc = start_node("w1", [d.address], storage=url, settings=SETTINGS)
    await wait_for_node(d, "w1", proc=proc)
    return proc


async def test_a_poison_job_fails_after_max_attempt_crashes_and_others_keep_running(
    distributor: Distributor, start_node: NodeFactory, url: str, tmp_path: Path
) -> None:
    crashes = tmp_path / "crashes.txt"
    errors = Recorder()
    node = await _start(distributor, start_node, url)
    before = [distributor.enqueue("record", {"tag": f"b{i}"}) for i in range(5)]
    await asyncio.wait_for(asyncio.gather(*before), 15)
    poison = distributor.enqueue("crash_node", {"path": str(crashes)}, on_error=errors)
    restarts = 0
    deadline = time.monotonic() + 60
    while not poison.done():  # the restart loop a supervisor would be
        assert time.monotonic() < deadline, f"still crashing after {restarts} restarts"
        if node.proc.poll() is not None:
            assert node.proc.returncode == 1
            assert restarts < 6, "the node kept crash-looping"
            restarts += 1
            node = await _start(distributor, start_node, url)
        await asyncio.sleep(0.05)
    with pytest.raises(JobFailed) as failed:
        await poison
    assert failed.value.type_name == "NodeCrashed", failed.value
    assert "attempt 3 of max_attempt 3" in str(failed.value)
    assert [line.split()[1] for line in lines(crashes)] == ["1", "2", "3"]
    assert restarts == 3 and node.proc.poll() is None, "the node must stop crash-looping"
    await async_wait_until(lambda: len(errors.calls) == 1, 5)
    after = [distributor.enqueue("record", {"tag": f"a{i}"}) for i in range(5)]
    assert [r["result"] for r in await asyncio.wait_for(asyncio.gather(*after), 15)] == ["ok"] * 5
    with RedisMonitor(url) as monitor:
        record = monitor.load(poison.id)
        assert record is not None
        assert record["status"] == "failed" and record["attempt"] == 3
        assert record["last_error"].startswith("NodeCrashed")


async def test_a_job_killed_mid_run_runs_again_as_attempt_2(
    distributor: Distributor, start_node: NodeFactory, url: str, tmp_path: Path
) -> None:
    path = tmp_path / "starts.txt"
    node = await _start(distributor, start_node, url)
    ok = Recorder()
    spec = {"path": str(path), "seconds": 30, "until": 3}
    handle = distributor.enqueue("note_attempt", spec, on_success=ok)
    await async_wait_until(lambda: len(lines(path)) == 1, 10)
    with RedisMonitor(url) as monitor:  # written before the body started
        record = monitor.load(handle.id)
        assert record is not None and (record["status"], record["attempt"]) == ("in progress", 1)
    node.kill()
    node = await _start(distributor, start_node, url)
    await async_wait_until(lambda: len(lines(path)) == 2, 10)
    assert [line.split()[:2] for line in lines(path)] == [["start", "1"], ["start", "2"]]
    with RedisMonitor(url) as monitor:
        record = monitor.load(handle.id)
        assert record is not None and (record["status"], record["attempt"]) == ("in progress", 2)
        assert record["last_error"].startswith("NodeCrashed")
    node.kill()  # once more: the third run is attempt 3, which finishes
    await _start(distributor, start_node, url)
    result = await asyncio.wait_for(handle, 15)
    assert result["attempt_seen"] == 3 and lines(path)[2].split()[:2] == ["start", "3"]
    await async_wait_until(lambda: len(ok.calls) == 1, 5)


async def test_many_more_jobs_than_the_write_ahead_window_all_run_in_few_writes(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long run slice: a full window of written jobs runs in one go, and whatever is ready
    # after it must still be collected (no kick comes from elsewhere).
    monkeypatch.setattr("reactor.node.runner.RUN_SLICE", 30.0)
    registry = JobRegistry()
    registry.define("noop", lambda args: None)
    n = 4 * MAX_AHEAD
    config = Config(log_job_processing=False)
    async with Distributor("127.0.0.1", 0, config=config) as d:
        node = Node("w1", distributors=[d.address], storage=url, registry=registry)
        await node.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(d.enqueue("noop", {}) for _ in range(n))), 60)
            assert node.stats["attempts"] == n
            assert node.storage is not None
            batches = node.storage.batches  # type: ignore[attr-defined]
            assert batches < n / 4, f"{batches} pipelines for {n} jobs: attempts not batched"
        finally:
            await node.stop()
