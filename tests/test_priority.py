"""Priorities: higher first wherever jobs wait (the distributor's buffer, a node's ready queue
and its async slots), FIFO within a priority; a real node process runs a high-priority job
enqueued behind 1,000 low ones among the first few."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from reactor import Config, Distributor
from reactor.core.jobstate import JobState
from reactor.core.node import NodeCore
from reactor.core.routing import NodeState, Presence, Router
from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.testing.support import async_wait_until
from tests.fake_port import RecordingPort

from .conftest import FAST, NodeFactory, lines, wait_for_node


def _core() -> NodeCore:
    return NodeCore(
        RecordingPort(),
        name="n",
        session="s",
        links=[],
        config=Config(),
        capacity=10,
        job_names=["j"],
        durable=False,
        where="",
    )


def _record(job_id: str, priority: int) -> JobRecord:
    record = JobRecord(job_id, "j", b"\x80", priority=priority)
    record.status = R.QUEUED
    return record


def test_node_ready_queue_runs_higher_priorities_first_fifo_within_and_negatives_last() -> None:
    core = _core()
    specs = [("a", 0), ("b", 5), ("c", -1), ("d", 0), ("e", 5), ("f", 9), ("g", -1)]
    core.resume([_record(i, p) for i, p in specs], 0.0, 0.0)
    order = []
    while (job := core.next_ready(0.0)) is not None:
        order.append(job.id)
    assert order == ["f", "b", "e", "a", "d", "c", "g"]
    assert core.idle


def test_plain_jobs_keep_the_deque_path_and_async_slots_wait_by_priority() -> None:
    core = _core()
    core.resume([_record(i, 0) for i in "abc"], 0.0, 0.0)
    assert not core.ranked and [j.id for j in core.ready] == ["a", "b", "c"]
    for job_id, priority in [("x", 0), ("y", -2), ("z", 3), ("w", 0), ("v", 3)]:
        core.wait_slot(_record(job_id, priority))
    assert [j.id for j in core.slot_wait] == ["z", "v", "x", "w", "y"]


def _state(job_id: str, priority: int) -> JobState:
    job = JobState(job_id, "j", b"\x80", None, 0.0)
    job.route(None, None, priority, periodic=False)
    return job


def test_distributor_buffer_sends_higher_priorities_first_fifo_within() -> None:
    router = Router(strict=lambda: False)
    node = NodeState("n", b"n")
    node.presence, node.capacity, node.job_names = Presence.UP, 100, frozenset({"j"})
    router.nodes = {"n": node}
    for job_id, priority in [("a", 0), ("b", -3), ("c", 7), ("d", 0), ("e", 7), ("f", 1)]:
        router.park(_state(job_id, priority))
    assert [j.id for j in router.waiting_jobs()] == ["c", "e", "f", "a", "d", "b"]
    placed = []
    for job, picked in router.drain():
        router.charge(job, picked)
        placed.append(job.id)
    assert placed == ["c", "e", "f", "a", "d", "b"] and router.waiting == 0


async def _high_among_first(d: Distributor, path: Path, low: int) -> int:
    low_handles = [d.enqueue("record", {"path": str(path), "tag": f"low-{i}"}) for i in range(low)]
    high = d.enqueue("record", {"path": str(path), "tag": "high"}, priority=10)
    return await _position(high, low_handles, path)


async def _position(high: Any, low_handles: list[Any], path: Path) -> int:
    await asyncio.wait_for(high, 30)
    tags = [line.split()[0] for line in lines(path)]
    return tags.index("high")


async def test_high_priority_job_behind_1000_waiting_low_ones_starts_first(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    """Every job waits in the distributor's buffer until the node process connects."""
    path = tmp_path / "order.txt"
    low = [
        distributor.enqueue("record", {"path": str(path), "tag": f"low-{i}"}) for i in range(1000)
    ]
    high = distributor.enqueue("record", {"path": str(path), "tag": "high"}, priority=10)
    core = distributor.core
    assert core is not None
    await async_wait_until(lambda: core.router.waiting == 1001)
    assert distributor.snapshot()["waiting_jobs"][0]["id"] == high.id
    proc = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=proc)
    assert await _position(high, low, path) <= 2
    await asyncio.wait_for(asyncio.gather(*low), 60)


async def test_high_priority_job_behind_1000_low_ones_on_a_busy_node_starts_among_the_first(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    """The node process is up with room for one job at a time: the rest wait their turn."""
    proc = start_node("w1", [distributor.address], capacity=1, settings=FAST)
    await wait_for_node(distributor, "w1", proc=proc)
    path = tmp_path / "order.txt"
    assert await _high_among_first(distributor, path, 1000) <= 3
