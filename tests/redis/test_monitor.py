"""RedisMonitor and the `reactor monitor` command, against records written by RedisStorage."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import msgpack
import pytest
import redis

from reactor.cli import main
from reactor.errors import StorageUnavailableError
from reactor.monitor import RedisMonitor
from reactor.record import COMPLETE, ERROR, FAILED, NEW, QUEUED
from reactor.storage.redis import RedisStorage
from tests.redis.conftest import ServerFactory, make_job

pytestmark = pytest.mark.redis


@pytest.fixture
async def stored(redis_url: str) -> AsyncIterator[str]:
    """``node`` and ``node_2`` with jobs in several statuses, written by the real storage."""
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
    with redis.Redis.from_url(stored) as client:
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
    header, _rule, row_node, row_node_2 = out.splitlines()
    assert header.split()[:3] == ["node", "new", "in"]
    assert row_node.split() == ["node", "1", "0", "1", "1", "1", "1", "0", "5"]
    assert row_node_2.split() == ["node_2", "1", "0", "1", "0", "0", "0", "0", "2"]


def test_cli_jobs_table(stored: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--redis", stored, "jobs", "node", "--unfinished"]) == 0
    out = capsys.readouterr().out
    assert "n-new" in out and "n-queued" in out and "n-error" in out
    assert "n-done" not in out and "other-1" not in out
    assert "2023-11-14 22:13:20.500 UTC" in out  # n-new's run_at, human readable
    assert "ValueError: bad" in out
    assert main(["monitor", "--redis", stored, "jobs", "nobody"]) == 1


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
