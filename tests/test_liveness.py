"""Issue 3: a frozen node's unacknowledged jobs move elsewhere; SIGTERM finishes running jobs."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from reactor import Distributor
from reactor.testing.support import async_wait_until

from .conftest import NodeFactory, Recorder, lines, start_two, wait_for_node


async def test_frozen_node_has_its_unacked_jobs_resent(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    a, b = await start_two(distributor, start_node)
    ok = Recorder()
    a.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    path = tmp_path / "ran.txt"
    handles = [
        distributor.enqueue("record", {"path": str(path), "tag": str(i)}, node="A", on_success=ok)
        for i in range(5)
    ]
    results = await asyncio.wait_for(asyncio.gather(*handles), 2.0 + 5)
    moved_after = time.monotonic() - frozen_at
    assert {r["pid"] for r in results} == {b.pid}
    assert moved_after < 2.0 + 3, moved_after
    print(f"frozen node's jobs completed elsewhere {moved_after:.2f}s after the freeze")
    a.signal(signal.SIGCONT)  # it wakes up holding jobs that ran elsewhere
    await wait_for_node(distributor, "A", proc=a)
    await asyncio.sleep(0.5)
    assert len(ok.calls) == 5, "a late message from the frozen node gave a second feedback"


async def test_sigterm_lets_the_running_job_finish_and_exits_zero(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    node = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=node)
    path = tmp_path / "started.txt"
    handle = distributor.enqueue("async_sleep", {"seconds": 1.5, "path": str(path)})
    await async_wait_until(lambda: len(lines(path)) == 1, 10)
    node.signal(signal.SIGTERM)
    result = await asyncio.wait_for(handle, 10)
    assert result["finished"] - result["began"] >= 1.5 - 0.01  # loop timers have ms resolution
    assert await asyncio.to_thread(node.wait, 10) == 0


async def test_sigterm_hands_unstarted_jobs_back_to_run_elsewhere(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    slow = start_node("slow", [distributor.address], capacity=1)
    await wait_for_node(distributor, "slow", proc=slow)
    path = tmp_path / "began.txt"
    first = distributor.enqueue("async_sleep", {"seconds": 1.0, "path": str(path)}, node="slow")
    queued = distributor.enqueue("record", {}, node="slow")
    # The first runs on slow and the other waits there (stored: slow's capacity is 1).
    await async_wait_until(lambda: len(lines(path)) == 1 and distributor.unstored_count() == 0, 10)
    fresh = start_node("fresh", [distributor.address])
    await wait_for_node(distributor, "fresh", proc=fresh)
    slow.signal(signal.SIGTERM)
    done = await asyncio.wait_for(asyncio.gather(first, queued), 10)
    assert done[0]["pid"] == slow.pid
    assert done[1]["pid"] in (slow.pid, fresh.pid)
    assert await asyncio.to_thread(slow.wait, 10) == 0


async def test_node_reconnects_to_a_restarted_distributor(
    start_node: NodeFactory,
    config,  # type: ignore[no-untyped-def]
) -> None:
    from reactor.testing.support import free_port

    port = free_port()
    async with Distributor("127.0.0.1", port, config=config) as first:
        node = start_node("w1", [first.address])
        await wait_for_node(first, "w1", proc=node)
        assert (await asyncio.wait_for(first.enqueue("record", {}), 10))["result"] == "ok"
    async with Distributor("127.0.0.1", port, config=config) as second:
        await wait_for_node(second, "w1", proc=node)
        assert (await asyncio.wait_for(second.enqueue("record", {}), 10))["result"] == "ok"


async def test_a_blocked_distributor_loop_does_not_declare_nodes_gone(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    node = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=node)
    time.sleep(3.0)  # the application blocks the distributor's loop past heartbeat_timeout (2 s)
    await asyncio.sleep(0.5)  # a few heartbeat ticks after the stall
    assert distributor.node_alive("w1")
    assert (await asyncio.wait_for(distributor.enqueue("record", {}), 10))["result"] == "ok"


async def test_a_blocking_def_job_does_not_make_its_node_look_gone(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    node = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=node)
    handle = distributor.enqueue("block", {"seconds": 3.5})  # heartbeat_timeout is 2 s
    while not handle.done():
        assert distributor.node_alive("w1"), "the node was declared gone while a def job blocked"
        await asyncio.sleep(0.05)
    assert (await handle)["blocked"] is True
