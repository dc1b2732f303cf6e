"""`reactor monitor jobs --tag` and `reactor monitor prune`, on Redis and on a Redis Cluster:
tags filter the listing (every one must match) and show in tables and JSON; prune lists without
deleting on a dry run, deletes by count and by age, never touches unfinished jobs, and refuses
bad input with one line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import redis as redis_lib

from reactor import Distributor
from reactor.cli import main
from reactor.jobs.record import COMPLETE, FAILED
from reactor.ops.monitor import RedisMonitor
from reactor.storage.redis import RedisStorage
from reactor.storage.redis_layout import kept_key
from reactor.testing.support import async_wait_until

from ..conftest import NodeFactory, wait_for_node
from .conftest import make_job

pytestmark = pytest.mark.redis


async def test_monitor_jobs_filters_by_every_tag_and_shows_them(
    distributor: Distributor,
    start_node: NodeFactory,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = start_node("w1", [distributor.address], storage=redis_url)
    await wait_for_node(distributor, "w1", proc=proc)
    both = distributor.enqueue("record", {}, after=60, tags=["billing", "eu"]).id
    billing = distributor.enqueue("record", {}, after=60, tags=["billing"]).id
    distributor.enqueue("record", {}, after=60, tags=["tenant:42"])
    distributor.enqueue("record", {}, after=60)
    with RedisMonitor(redis_url) as monitor:
        await async_wait_until(lambda: len(monitor.jobs_for("w1")) == 4, 10)

    def listed(*extra: str) -> dict[str, list[str] | None]:
        assert main(["monitor", "--redis", redis_url, "jobs", "w1", "--json", *extra]) == 0
        return {j["id"]: j["tags"] for j in json.loads(capsys.readouterr().out)["jobs"]}

    assert listed("--tag", "billing") == {both: ["billing", "eu"], billing: ["billing"]}
    assert listed("--tag", "billing", "--tag", "eu") == {both: ["billing", "eu"]}
    assert listed("--tag", "eu", "--unfinished", "--name", "record") == {both: ["billing", "eu"]}
    assert listed("--tag", "nobody") == {}
    assert len(listed()) == 4
    assert main(["monitor", "--redis", redis_url, "jobs", "w1", "--tag", "eu"]) == 0
    out = capsys.readouterr().out
    assert "tags" in out and "billing,eu" in out and both in out and billing not in out


@pytest.fixture(params=["redis", "redis-cluster"])
async def kept(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, RedisStorage]]:
    """A Redis (or Cluster) URL whose node ``w1`` keeps 5 failed records (f0 oldest), one
    complete and one unfinished, written by the node's own storage."""
    url: str = request.getfixturevalue("redis_url" if request.param == "redis" else
                                       "redis_cluster_url")  # fmt: skip
    storage = RedisStorage(url, retry_base=0.05)
    await storage.start("w1")
    failed = [make_job(f"f{i}", node="w1") for i in range(5)]
    done, waiting = make_job("done", node="w1"), make_job("waiting", node="w1")
    await storage.add([*failed, done, waiting])
    for job in failed:
        job.status = FAILED
        storage.update(job)
        await storage.flush()  # one after the other: distinct finish times
    done.status = COMPLETE
    storage.update(done)
    await storage.flush()
    yield url, storage
    await storage.close()


async def _prune(url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``reactor monitor prune w1 ...`` (in a thread: the CLI runs its own event loop)."""
    code = await asyncio.to_thread(main, ["monitor", "--redis", url, "prune", "w1", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_prune_dry_run_lists_without_deleting_then_prune_keeps_the_newest(
    kept: tuple[str, RedisStorage], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _storage = kept
    code, out, _ = await _prune(url, capsys, "--status", "failed", "--keep-last", "2", "--dry-run",
                          "--json")  # fmt: skip
    assert code == 0
    document = json.loads(out)
    assert document["dry_run"] is True
    assert [r["id"] for r in document["removed"]] == ["f0", "f1", "f2"]
    with RedisMonitor(url) as monitor:
        assert monitor.counts("w1")[FAILED] == 5  # nothing deleted
        code, out, _ = await _prune(
            url, capsys, "--status", "failed", "--keep-last", "2", "--dry-run"
        )
        assert code == 0 and "f0" in out and "would remove 3 kept records" in out
        assert monitor.counts("w1")[FAILED] == 5

        code, out, _ = await _prune(url, capsys, "--status", "failed", "--keep-last", "2")
        assert code == 0 and "removed 3 kept records of node 'w1' (3 failed)" in out
        assert {i for i, r in monitor.jobs_for("w1").items() if r["status"] == FAILED} == {
            "f3",
            "f4",
        }
        assert monitor.load("waiting") is not None and monitor.load("done") is not None
        assert monitor.node_of("f0") is None  # job-node cleaned too


async def test_prune_by_age_removes_only_older_records(
    kept: tuple[str, RedisStorage], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _storage = kept
    code, out, _ = await _prune(url, capsys, "--status", "failed", "--older-than", "7d")
    assert code == 0 and "removed 0 kept records" in out  # all finished just now
    client = redis_lib.RedisCluster.from_url(url.replace("+cluster", "")) if "+cluster" in url \
        else redis_lib.Redis.from_url(url)  # fmt: skip
    with client:
        eight_days_ago = time.time() - 8 * 86400
        client.zadd(kept_key("reactor", "w1", FAILED), {"f0": eight_days_ago, "f1": eight_days_ago})
        client.zadd(kept_key("reactor", "w1", COMPLETE), {"done": eight_days_ago})
    code, out, _ = await _prune(url, capsys, "--status", "failed", "--status", "complete",
                          "--older-than", "7d", "--json")  # fmt: skip
    assert code == 0
    removed = json.loads(out)["removed"]
    assert sorted((r["id"], r["status"]) for r in removed) == [
        ("done", "complete"),
        ("f0", "failed"),
        ("f1", "failed"),
    ]
    with RedisMonitor(url) as monitor:
        assert monitor.counts("w1")[FAILED] == 3 and monitor.load("waiting") is not None


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--older-than", "7d"], "--status is required"),
        (["--status", "new", "--older-than", "7d"], "only kept records are pruned"),
        (["--status", "failed"], "give --older-than AGE, --keep-last N, or both"),
        (["--status", "failed", "--older-than", "soon"], "'soon' is not a duration"),
        (["--status", "failed", "--keep-last", "-1"], "--keep-last takes a whole number >= 0"),
    ],
)
async def test_prune_refuses_bad_input_with_one_line(
    redis_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    code, out, err = await _prune(redis_url, capsys, *argv)
    assert code == 2 and out == ""
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
