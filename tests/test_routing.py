"""Issue 3: pinned and excluded nodes, load spreading, strict routing, waiting jobs."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from reactor import Config, Distributor
from reactor.testing import async_wait_until

from .conftest import NodeFactory, lines, wait_for_node


async def _two_nodes(d: Distributor, start_node: NodeFactory) -> dict[int, str]:
    a = start_node("A", [d.address])
    b = start_node("B", [d.address])
    await wait_for_node(d, "A", proc=a)
    await wait_for_node(d, "B", proc=b)
    return {a.pid: "A", b.pid: "B"}


async def test_pinned_jobs_run_only_on_their_node(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    names = await _two_nodes(distributor, start_node)
    results = await asyncio.wait_for(
        asyncio.gather(*(distributor.enqueue("record", {}, node="B") for _ in range(20))), 10
    )
    assert {names[r["pid"]] for r in results} == {"B"}


async def test_not_node_holds_over_twenty_jobs(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    names = await _two_nodes(distributor, start_node)
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                distributor.enqueue("async_sleep", {"seconds": 0.05}, not_node="A")
                for _ in range(20)
            )
        ),
        10,
    )
    assert {names[r["pid"]] for r in results} == {"B"}


async def test_load_spreads_over_two_nodes(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    names = await _two_nodes(distributor, start_node)
    results = await asyncio.wait_for(
        asyncio.gather(*(distributor.enqueue("async_sleep", {"seconds": 0.1}) for _ in range(40))),
        10,
    )
    spread = Counter(names[r["pid"]] for r in results)
    assert spread["A"] >= 5 and spread["B"] >= 5, spread


async def test_strict_job_waits_for_its_absent_node(
    start_node: NodeFactory, tmp_path: Path
) -> None:
    config = Config(
        always_use_specified_node=True,
        heartbeat_interval=0.2,
        heartbeat_timeout=2.0,
        log_job_processing=False,
    )
    async with Distributor("127.0.0.1", 0, config=config) as d:
        other = start_node("other", [d.address])
        await wait_for_node(d, "other", proc=other)
        path = tmp_path / "ran.txt"
        handle = d.enqueue("record", {"path": str(path)}, node="wanted")
        await asyncio.sleep(1.0)  # the assertion's window: "other" is never given wanted's job
        assert not handle.done() and not path.exists()
        assert d.snapshot()["waiting"] == 1
        wanted = start_node("wanted", [d.address])
        result = await asyncio.wait_for(handle, 15)
        assert result["pid"] == wanted.pid


async def test_job_enqueued_with_no_node_runs_when_one_connects(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    path = tmp_path / "ran.txt"
    handles = [distributor.enqueue("record", {"path": str(path), "tag": str(i)}) for i in range(5)]
    await async_wait_until(lambda: distributor.snapshot()["waiting"] == 5, 5)
    assert not path.exists()
    start_node("late", [distributor.address])
    await asyncio.wait_for(asyncio.gather(*handles), 15)
    assert len(lines(path)) == 5


async def test_one_node_serves_two_distributors_and_feedback_goes_home(
    start_node: NodeFactory, config: Config
) -> None:
    async with (
        Distributor("127.0.0.1", 0, config=config) as d1,
        Distributor("127.0.0.1", 0, config=config) as d2,
    ):
        node = start_node("shared", [d1.address, d2.address])
        await wait_for_node(d1, "shared", proc=node)
        await wait_for_node(d2, "shared", proc=node)
        from_d1 = [d1.enqueue("record", {"tag": f"one-{i}"}) for i in range(10)]
        from_d2 = [d2.enqueue("record", {"tag": f"two-{i}"}) for i in range(10)]
        one = await asyncio.wait_for(asyncio.gather(*from_d1), 10)
        two = await asyncio.wait_for(asyncio.gather(*from_d2), 10)
        assert sorted(r["tag"] for r in one) == sorted(f"one-{i}" for i in range(10))
        assert sorted(r["tag"] for r in two) == sorted(f"two-{i}" for i in range(10))
        assert {r["pid"] for r in one + two} == {node.pid}
