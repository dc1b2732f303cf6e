"""Workflows: the cost per step over a plain job, and a 10,000-step chord's time and memory.

``python -m benchmarks.flows [N] [REPEAT] [durable]``: a distributor and a node in one process (the
harshest case for the flow's own work, which then shares the one CPU the jobs run on) run N
trivial jobs as plain enqueues, then as a group of N steps, then as a chord over it, best of
REPEAT; then the memory a flow holds per step (tracemalloc, flow and machine, at 1,000 and
N steps: flat per-step bytes mean memory linear in size) and the time per step at both sizes
(flat means no work that grows with the group). ``durable`` runs the same on a throwaway
redis-server with ``outbox=``, both the plain jobs and the flows (durable flows record each
step's launch and end).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from typing import Any

from reactor import Config, Distributor, chord, group, step
from reactor.core.flow import FlowMachine
from reactor.jobs.registry import JobRegistry
from reactor.node.driver import Node


def _body(args: dict[str, Any]) -> None:
    args["ok"] = args["i"]


def _total(args: dict[str, Any]) -> None:
    args["total"] = sum(r["ok"] for r in args["results"])


async def _plain(d: Distributor, n: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(d.enqueue("t", {"i": i}) for i in range(n)))
    return time.perf_counter() - started


async def _group(d: Distributor, n: int) -> float:
    started = time.perf_counter()
    result = await d.enqueue_flow(group(step("t", {"i": i}) for i in range(n)))
    assert len(result) == n
    return time.perf_counter() - started


async def _chord(d: Distributor, n: int) -> float:
    started = time.perf_counter()
    flow = chord(group(step("t", {"i": i}) for i in range(n)), step("total"))
    result = await d.enqueue_flow(flow)
    assert result["total"] == n * (n - 1) // 2
    return time.perf_counter() - started


def flow_bytes(n: int) -> float:
    """Bytes per step a built chord of ``n`` steps and its started machine hold."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    machine = FlowMachine(chord(group(step("t", {"i": i}) for i in range(n)), step("total")))
    launches = machine.start()
    for launch in launches:
        machine.job_ids[launch.number] = f"{launch.number:012x}"
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(launches) == n
    return held / (n + 1)


async def run(n: int, repeat: int, outbox: str | None = None) -> None:
    """Print the per-step overhead and the chord's figures (through ``outbox`` when given)."""
    config = Config(log_job_processing=False, max_waiting_jobs=10 * n)
    distributor = Distributor("127.0.0.1", 0, config=config, outbox=outbox, group="bench")
    await distributor.start()
    registry = JobRegistry()
    registry.define("t", _body)
    registry.define("total", _total)
    node = Node("n", distributors=[distributor.address], registry=registry, config=config)
    await node.start()
    try:
        await _plain(distributor, 200)  # warm up
        plain = min([await _plain(distributor, n) for _ in range(repeat)])
        grouped = min([await _group(distributor, n) for _ in range(repeat)])
        chords = {size: min([await _chord(distributor, size) for _ in range(repeat)])
                  for size in (1_000, n)}  # fmt: skip
    finally:
        await node.stop()
        await distributor.stop()
    print(f"{n} plain jobs: {plain:.3f} s ({plain / n * 1e6:.1f} us/job)")
    print(f"a group of {n} steps: {grouped:.3f} s ({grouped / n * 1e6:.1f} us/step)")
    print(f"per-step overhead vs a plain job: {(grouped / plain - 1) * 100:+.1f} %")
    for size, seconds in chords.items():
        print(f"a chord over {size} steps: {seconds:.3f} s ({seconds / size * 1e6:.1f} us/step)")
    for size in (1_000, n):
        print(f"flow memory at {size} steps: {flow_bytes(size):.0f} bytes/step")


def main(argv: list[str]) -> None:
    size = int(argv[0]) if argv else 10_000
    repeat = int(argv[1]) if len(argv) > 1 else 3
    if argv[2:3] != ["durable"]:
        asyncio.run(run(size, repeat))
        return
    from reactor.testing.redis_server import RedisServer

    with RedisServer(extra_args=["--appendonly", "no"]) as server:
        print(f"durable: outbox= and flow records on {server.url}")
        asyncio.run(run(size, repeat, server.url))


if __name__ == "__main__":
    main(sys.argv[1:])
