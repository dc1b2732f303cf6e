"""RedisMonitor and the `reactor monitor` command, against records written by RedisStorage."""

from __future__ import annotations

import contextlib
import io
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import msgpack
import pytest
import redis

from reactor.cli import main
from reactor.errors import StorageUnavailableError
from reactor.jobs.record import COMPLETE, ERROR, FAILED, NEW, QUEUED
from reactor.ops.monitor import RedisMonitor, retry_key
from reactor.storage.redis import RedisStorage
from tests.redis.conftest import ServerFactory, make_job, store_many

pytestmark = pytest.mark.redis


@contextlib.contextmanager
def _client(url: str) -> Iterator[redis.Redis]:
    """A raw client for ``url``, a Cluster client on a cluster (the monitor's own)."""
    with RedisMonitor(url) as monitor:
        yield monitor.redis


@pytest.fixture(params=["redis", "redis-cluster"])
async def stored(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """``node`` and ``node_2`` with jobs in several statuses, written by the real storage, on
    one Redis and on a 3-master Redis Cluster (the monitor runs unchanged on both)."""
    redis_url = request.getfixturevalue(
        "redis_url" if request.param == "redis" else "redis_cluster_url"
    )
    node, node_2 = RedisStorage(redis_url), RedisStorage(redis_url)
    await node.start("node")
    await node_2.start("node_2")
    args = msgpack.packb({"arg1": 1, "to": "ann@example.com"}, use_bin_type=True)
    await node.add([
        make_job("n-new", status=NEW, args=args, run_at=1_700_000_000.5),
        make_job("n-queued", status=QUEUED, period=30.0, run_at=1_700_000_100.0),
        make_job("n-error", status=ERROR, attempt=2, last_error="ValueError: bad", failed_at=5.5),
        make_job("n-done", status=COMPLETE),
        make_job("n-failed", status=FAILED, attempt=10, last_error="KeyError: 'x'"),
    ])  # fmt: skip
    await node_2.add([make_job("other-1", status=NEW), make_job("other-2", status=QUEUED)])
    await node.close()
    await node_2.close()
    yield redis_url


def test_jobs_for_one_node_never_includes_node_2(stored: str) -> None:
    with RedisMonitor(stored) as monitor:
        assert set(monitor.jobs_for("node")) == {
            "n-new",
            "n-queued",
            "n-error",
            "n-done",
            "n-failed",
        }
        assert set(monitor.jobs_for("node", to_be_retried=True)) == {"n-new", "n-queued", "n-error"}
        assert set(monitor.jobs_for("node_2")) == {"other-1", "other-2"}
        assert monitor.jobs_for("nod") == {}


def test_load_gives_the_record_with_decoded_args(stored: str) -> None:
    with RedisMonitor(stored) as monitor:
        record = monitor.load("n-new")
        assert record is not None
        assert record["args"] == {"arg1": 1, "to": "ann@example.com"}
        assert (record["id"], record["name"], record["status"]) == ("n-new", "test_job", NEW)
        assert record["run_at"] == 1_700_000_000.5 and record["period"] is None
        error = monitor.load("n-error")
        assert error is not None
        assert (error["attempt"], error["last_error"], error["failed_at"]) == (
            2,
            "ValueError: bad",
            5.5,
        )
        assert monitor.load("no-such-job") is None  # never raises for a missing job


def test_destroy_one_job(stored: str) -> None:
    with RedisMonitor(stored) as monitor:
        assert monitor.destroy("n-queued") is True
        assert monitor.load("n-queued") is None
        assert "n-queued" not in monitor.jobs_for("node")
        assert monitor.destroy("n-queued") is False
    with _client(stored) as client:
        assert not client.sismember("reactor:{node}:jobs", "n-queued")
        assert client.hget("reactor:job-node", "n-queued") is None


def test_destroy_all_jobs_for_node_leaves_node_2_alone(stored: str) -> None:
    with RedisMonitor(stored) as monitor:
        assert monitor.destroy_all_jobs_for("node") == 5
        assert monitor.jobs_for("node") == {}
        assert set(monitor.jobs_for("node_2")) == {"other-1", "other-2"}
        assert monitor.load("other-1") is not None
        assert monitor.nodes() == ["node_2"]
        assert monitor.destroy_all_jobs_for("node") == 0


def test_nodes_and_counts(stored: str) -> None:
    with RedisMonitor(stored) as monitor:
        assert monitor.nodes() == ["node", "node_2"]
        counts = monitor.counts("node")
        assert counts[NEW] == counts[QUEUED] == counts[ERROR] == counts[COMPLETE] == 1
        assert counts[FAILED] == 1 and counts["in progress"] == 0 and sum(counts.values()) == 5


def test_jobs_page_pages_through_everything_once(stored: str) -> None:
    with RedisMonitor(stored) as monitor:
        for limit in (1, 2, 3, 5, 20):
            seen: list[str] = []
            cursor = 0
            while True:
                page, cursor = monitor.jobs_page("node", limit=limit, cursor=cursor)
                assert len(page) <= limit
                seen += [r["id"] for r in page]
                if not cursor:
                    break
            assert sorted(seen) == ["n-done", "n-error", "n-failed", "n-new", "n-queued"], limit
        page, cursor = monitor.jobs_page("node", status=[FAILED, ERROR], limit=1)
        assert len(page) == 1 and page[0]["status"] in (FAILED, ERROR) and cursor
        rest, _ = monitor.jobs_page("node", status=[FAILED, ERROR], limit=5, cursor=cursor)
        assert {r["id"] for r in page + rest} == {"n-failed", "n-error"}
        assert monitor.jobs_page("node", name="test_job", status=NEW)[0][0]["id"] == "n-new"
        assert monitor.jobs_page("node", name="other_job") == ([], 0)
        assert monitor.jobs_page("nobody") == ([], 0)
        with pytest.raises(ValueError, match="limit >= 1"):
            monitor.jobs_page("node", limit=0)


def test_retry_resets_the_record_and_queues_it_for_its_node(stored: str) -> None:
    with RedisMonitor(stored) as monitor:
        before = time.time()
        assert monitor.retry("n-failed") is True
        record = monitor.load("n-failed")
        assert record is not None
        assert (record["status"], record["attempt"], record["last_error"]) == (NEW, 0, None)
        assert record["failed_at"] is None and record["run_at"] >= before
        assert record["args"] == {"arg1": 1} and record["name"] == "test_job"  # the rest is kept
        assert monitor.retry("n-error") is True  # an error (retrying) job too
        assert monitor.retry("n-failed") is False  # new now
        for job_id in ("n-new", "n-queued", "n-done", "missing", "other-1"):
            assert monitor.retry(job_id) is False, job_id
    with _client(stored) as client:
        assert client.lrange(retry_key("reactor", "node"), 0, -1) == [b"n-failed", b"n-error"]
        assert not client.exists(retry_key("reactor", "node_2"))
    assert retry_key("reactor", "node") == "reactor:{node}:retry"  # the node's hash tag


def test_retry_failed_only_takes_failed_jobs(stored: str) -> None:
    seen: list[int] = []
    with RedisMonitor(stored) as monitor:
        assert monitor.retry_failed("node", progress=seen.append) == 1
        assert sum(seen) == 5
        assert monitor.counts("node")[FAILED] == 0 and monitor.counts("node")[ERROR] == 1
        assert monitor.retry_failed("node", statuses=(ERROR,)) == 1
        with pytest.raises(ValueError, match="can be retried"):
            monitor.retry_failed("node", statuses=(COMPLETE,))


@pytest.mark.slow
def test_a_page_of_a_50k_job_node_is_cheap(redis_url: str) -> None:
    """Issue 12: 20 rows of a 50,000-job node within 50 ms and 40 MB (was 1.28 s, 98 MB)."""
    total, node = 50_000, "big"
    store_many(redis_url, node, total)
    with RedisMonitor(redis_url) as monitor:
        monitor.jobs_page(node, limit=1)  # connect and warm up outside the measurement
        figures = {}
        for label, kwargs in (("any", {}), ("failed", {"status": FAILED})):
            started = time.perf_counter()  # time without tracemalloc, which slows Python down
            page, cursor = monitor.jobs_page(node, limit=20, **kwargs)  # type: ignore[arg-type]
            elapsed = time.perf_counter() - started
            tracemalloc.start()
            again, _ = monitor.jobs_page(node, limit=20, **kwargs)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert len(page) == 20 and cursor and again == page
            figures[label] = (elapsed, peak)
            print(f"jobs_page(limit=20, {label}) of {total}: "
                  f"{elapsed * 1000:.1f} ms, peak {peak / 1e6:.2f} MB")  # fmt: skip
        elapsed, peak = figures["any"]
        assert elapsed < 0.05 and peak < 40e6
        # a 1-in-1000 filter reads statuses until 20 matches: about 20,000 HMGETs, still bounded
        assert figures["failed"][1] < 40e6


def test_unreachable_redis_raises_storage_unavailable(make_redis_server: ServerFactory) -> None:
    never_started = make_redis_server(start=False)
    with (
        RedisMonitor(never_started.url) as monitor,
        pytest.raises(StorageUnavailableError, match="cannot reach Redis"),
    ):
        monitor.nodes()


# -- the command line -----------------------------------------------------------------------


def test_cli_nodes_table(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--redis", stored, "nodes"]) == 0
    out = capsys.readouterr().out
    header, _rule, row_node, row_node_2 = out.strip("\n").splitlines()
    assert header.split()[:3] == ["node", "new", "in"]
    assert row_node.split() == ["node", "1", "0", "1", "1", "1", "1", "0", "5"]
    assert row_node_2.split() == ["node_2", "1", "0", "1", "0", "0", "0", "0", "2"]
    assert main(["monitor", "--redis", stored, "nodes", "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    assert nodes["node"]["total"] == 5 and nodes["node_2"][NEW] == 1


def test_cli_jobs_table(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--redis", stored, "jobs", "node", "--unfinished"]) == 0
    out = capsys.readouterr().out
    assert "n-new" in out and "n-queued" in out and "n-error" in out
    assert "n-done" not in out and "other-1" not in out
    assert "2023-11-14 22:13:20.500 UTC" in out  # n-new's run_at, human readable
    assert "ValueError: bad" in out
    assert main(["monitor", "--redis", stored, "jobs", "nobody"]) == 1
    assert "no matching jobs stored for node 'nobody'" in capsys.readouterr().err


def test_cli_jobs_json_pages(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    cursor = 0
    for _ in range(10):
        argv = ["monitor", "--redis", stored, "jobs", "node", "--limit", "2", "--json"]
        assert main([*argv, "--cursor", str(cursor)]) == 0
        page = json.loads(capsys.readouterr().out)
        assert page["node"] == "node" and len(page["jobs"]) <= 2
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == ["n-done", "n-error", "n-failed", "n-new", "n-queued"]
    assert main(["monitor", "--redis", stored, "jobs", "node", "--status", "failed",
                 "--status", "error", "--json"]) == 0  # fmt: skip
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert sorted(j["id"] for j in jobs) == ["n-error", "n-failed"]
    assert {j["id"]: j["last_error"] for j in jobs}["n-failed"] == "KeyError: 'x'"
    assert main(["monitor", "--redis", stored, "jobs", "node", "--name", "other", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == []


def test_cli_retry(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--redis", stored, "retry", "n-failed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"job_id": "n-failed", "retried": True}
    assert main(["monitor", "--redis", stored, "retry", "n-error"]) == 0
    assert "job n-error queued for retry on node node" in capsys.readouterr().out
    assert main(["monitor", "--redis", stored, "retry", "n-new"]) == 1
    assert "job n-new is new: only cancelled, error, failed jobs can be retried" in (
        capsys.readouterr().err
    )
    assert main(["monitor", "--redis", stored, "retry", "missing"]) == 1
    assert "no stored job 'missing'" in capsys.readouterr().err


def test_cli_retry_failed(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--redis", stored, "retry-failed", "node", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"node": "node", "retried": 1}
    assert main(["monitor", "--redis", stored, "retry-failed", "node", "--yes"]) == 1
    assert "no failed jobs stored for node 'node'" in capsys.readouterr().err
    with _client(stored) as client:
        assert client.lrange("reactor:{node}:retry", 0, -1) == [b"n-failed"]


def test_cli_show(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--redis", stored, "show", "n-new"]) == 0
    out = capsys.readouterr().out
    assert "'to': 'ann@example.com'" in out and "test_job" in out
    assert main(["monitor", "--redis", stored, "show", "missing"]) == 1
    assert "no stored job 'missing'" in capsys.readouterr().err


def test_cli_destroy_asks_first(
    stored: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["monitor", "--redis", stored, "destroy", "n-queued"]) == 1
    assert "not destroyed" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["monitor", "--redis", stored, "destroy", "n-queued"]) == 0
    assert "destroyed job n-queued" in capsys.readouterr().out
    assert main(["monitor", "--redis", stored, "destroy", "n-queued", "--yes"]) == 1


def test_cli_destroy_all(
    stored: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # EOF: no answer is a refusal
    assert main(["monitor", "--redis", stored, "destroy-all", "node"]) == 1
    assert main(["monitor", "--redis", stored, "destroy-all", "node", "--yes"]) == 0
    assert "destroyed 5 jobs of node 'node'" in capsys.readouterr().out
    with RedisMonitor(stored) as monitor:
        assert monitor.jobs_for("node") == {} and len(monitor.jobs_for("node_2")) == 2


def test_cli_unreachable_redis(
    make_redis_server: ServerFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_redis_server(password="hunter2", start=False).url
    assert main(["monitor", "--redis", url, "nodes"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "hunter2" not in err


def test_cli_json_logs_of_a_monitor_action(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["monitor", "--redis", stored, "retry", "n-failed", "--log-level", "INFO"]
    assert main([*argv, "--log-format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "job n-failed queued for retry on node node\n"
    entries = [json.loads(line) for line in captured.err.splitlines()]
    assert [(e["level"], e["logger"], e["job_id"], e["node"]) for e in entries] == [
        ("INFO", "reactor.monitor", "n-failed", "node")
    ]
    main(["--log-level", "WARNING", "monitor", "--redis", stored, "nodes"])  # quiet again
