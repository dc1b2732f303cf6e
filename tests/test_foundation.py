"""Issue 2: a distributor in this process, real node processes, real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from reactor import Distributor, JobFailed, MessageTooLargeError, RemoteError
from reactor.testing.support import async_wait_until, free_port

from .conftest import NodeFactory, Recorder, lines, wait_for_node


async def test_one_job_runs_once_and_feedback_carries_additions(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1")
    ok = Recorder()
    path = tmp_path / "ran.txt"
    handle = distributor.enqueue("record", {"path": str(path), "tag": "a"}, on_success=ok)
    result = await asyncio.wait_for(asyncio.wrap_future(_fut(handle)), 10)
    assert result["result"] == "ok" and result["tag"] == "a"
    await async_wait_until(lambda: len(ok.calls) == 1)
    assert ok.args[0]["result"] == "ok"
    assert len(lines(path)) == 1
    await asyncio.sleep(0)  # let a duplicate feedback, if any, be handled
    assert len(ok.calls) == 1


def _fut(handle):  # type: ignore[no-untyped-def]
    return handle._future()


async def test_ten_jobs_ten_executions_distinct_ids(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1")
    path = tmp_path / "ran.txt"
    handles = [distributor.enqueue("record", {"path": str(path), "tag": str(i)}) for i in range(10)]
    results = await asyncio.wait_for(asyncio.gather(*handles), 15)
    assert len({h.id for h in handles}) == 10
    assert sorted(r["tag"] for r in results) == sorted(str(i) for i in range(10))
    assert sorted(line.split()[0] for line in lines(path)) == sorted(str(i) for i in range(10))


async def test_callbacks_run_in_order_on_one_dict(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1")
    result = await asyncio.wait_for(distributor.enqueue("chain", {"x": 1}), 10)
    assert result["order"] == ["body", "first", "second"]
    assert result["same_dict"] is True and result["x"] == 1


async def test_failing_job_runs_max_attempt_times_then_one_error_feedback(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    start_node("w1", [distributor.address], settings={"max_attempt": 3, "retry_multiplier": 0})
    await wait_for_node(distributor, "w1")
    errors, successes = Recorder(), Recorder()
    path = tmp_path / "attempts.txt"
    handle = distributor.enqueue(
        "failing", {"path": str(path)}, on_error=errors, on_success=successes
    )
    with pytest.raises(JobFailed) as info:
        await asyncio.wait_for(handle, 15)
    assert info.value.type_name == "NameError"
    assert "undefined_name" in info.value.message
    assert "Traceback" in info.value.traceback
    written = lines(path)
    assert written.count("attempt") == 3
    errbacks = [line for line in written if line.startswith("errback")]
    assert errbacks == ["errback saw_addition=False error=NameError"] * 3
    assert len(errors.calls) == 1 and not successes.calls
    error = errors.args[0]["error"]
    assert isinstance(error, RemoteError)
    assert str(error) == "NameError: name 'undefined_name' is not defined"
    assert error.type_name == "NameError"
    assert errors.args[0]["errback_was_here"] is True
    assert "added_by_failed_attempt" not in errors.args[0]


async def test_unknown_job_name_fails_at_once_and_node_keeps_running(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1")
    errors = Recorder()
    with pytest.raises(JobFailed) as info:
        await asyncio.wait_for(distributor.enqueue("no_such_job", {}, on_error=errors), 10)
    assert info.value.type_name == "NoSuchJob"
    assert "no_such_job" in info.value.message
    assert len(errors.calls) == 1
    result = await asyncio.wait_for(distributor.enqueue("record", {}), 10)
    assert result["result"] == "ok"


async def test_bad_args_raise_type_error_in_the_caller(distributor: Distributor) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        distributor.enqueue("record", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"args\['when'\].*object"):
        distributor.enqueue("record", {"ok": 1, "when": object()})
    with pytest.raises(TypeError, match=r"args\['s'\] is a set"):
        distributor.enqueue("record", {"s": {1, 2}})
    with pytest.raises(MessageTooLargeError, match="bytes"):
        distributor.enqueue("record", {"blob": b"x" * (5 * 1024 * 1024)})
    assert distributor.snapshot()["waiting"] == 0


async def test_twenty_async_jobs_run_concurrently_on_one_node(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1")
    began = time.monotonic()
    handles = [distributor.enqueue("async_sleep", {"seconds": 1.0}) for _ in range(20)]
    results = await asyncio.wait_for(asyncio.gather(*handles), 15)
    elapsed = time.monotonic() - began
    assert len(results) == 20
    assert elapsed < 3.0, f"20 one-second async jobs took {elapsed:.2f}s on one node"


async def test_jobs_from_four_threads_all_run_once(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1")
    path = tmp_path / "ran.txt"

    def produce(t: int) -> list[object]:
        return [
            distributor.enqueue("record", {"path": str(path), "tag": f"{t}-{i}"}) for i in range(50)
        ]

    per_thread = await asyncio.gather(*(asyncio.to_thread(produce, t) for t in range(4)))
    handles = [h for hs in per_thread for h in hs]
    await asyncio.wait_for(asyncio.gather(*handles), 20)  # type: ignore[arg-type]
    tags = [line.split()[0] for line in lines(path)]
    assert len(tags) == 200 and len(set(tags)) == 200


async def test_node_started_before_its_distributor_connects_when_it_comes_up(
    start_node: NodeFactory, config
) -> None:
    port = free_port()
    node = start_node("early", [f"127.0.0.1:{port}"])
    # The node is up and dialling a port nobody listens on yet.
    await async_wait_until(lambda: "node early started" in node.output(), 15)
    async with Distributor("127.0.0.1", port, config=config) as d:
        handle = d.enqueue("record", {"tag": "late"})
        result = await asyncio.wait_for(handle, 15)
        assert result["tag"] == "late"


async def test_garbage_on_the_distributor_port_does_not_stop_it(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    with socket.create_connection(("127.0.0.1", distributor.port)) as raw:
        raw.sendall(os.urandom(256 * 1024))
    with socket.create_connection(("127.0.0.1", distributor.port)) as raw:
        # A ZMTP greeting with junk where the handshake should be: zmq drops the connection.
        try:
            raw.sendall(b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00NULL" + b"\x00" * 48)
            raw.sendall(b"\x04\x19\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER")
            raw.sendall(b"\x00\x05hello" * 100)
        except ConnectionError:
            pass
    start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1")
    result = await asyncio.wait_for(distributor.enqueue("record", {"tag": "after"}), 10)
    assert result["tag"] == "after"
