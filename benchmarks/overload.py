"""Overload: enqueue far faster than the nodes can run, for a minute, and watch what holds.

    python -m benchmarks.overload [--seconds 60] [--capacity 2] [--waiting 10000]

One application (a distributor in this process, ``max_waiting_jobs=--waiting``) enqueues in a
tight loop for ``--seconds``; one memory node of ``--capacity`` runs ``def`` jobs of 2 ms. Each
refused enqueue raises ``BackPressureError`` and is counted. It reports the RSS of both processes
(at the start, at the burst's middle and at its end: bounded means the second half adds little),
how many jobs were accepted and refused, how long the node took to drain the backlog after the
burst (every accepted job must end: ``lost`` must be 0), and the start latency of 100 jobs sent
one at a time once it drained (recovery). The last line is one JSON object.
``tests/faults/test_overload.py`` asserts the same on an 8 s burst.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import percentile
from reactor import BackPressureError, Config, Distributor, JobHandle
from reactor.testing.support import NodeProcess

JOBS = Path(__file__).parent / "jobs"
MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / MIB


async def burst(d: Distributor, seconds: float, node_pid: int) -> dict[str, Any]:
    """Enqueue as fast as one task can; RSS at start, middle and end."""
    accepted: list[JobHandle] = []
    refused = 0
    marks: list[tuple[float, float]] = [(rss_mib(os.getpid()), rss_mib(node_pid))]
    began = time.monotonic()
    middle = began + seconds / 2
    end = began + seconds
    while (now := time.monotonic()) < end:
        if len(marks) == 1 and now >= middle:
            marks.append((rss_mib(os.getpid()), rss_mib(node_pid)))
        for _ in range(200):
            try:
                accepted.append(d.enqueue("soak_work", {"seconds": 0.002}))
            except BackPressureError:
                refused += 1
        await asyncio.sleep(0)
    marks.append((rss_mib(os.getpid()), rss_mib(node_pid)))
    return {
        "handles": accepted,
        "accepted": len(accepted),
        "refused": refused,
        "attempts_per_s": round((len(accepted) + refused) / seconds),
        "app_rss_mib": [round(m[0], 1) for m in marks],
        "node_rss_mib": [round(m[1], 1) for m in marks],
        "app_second_half_mib": round(marks[2][0] - marks[1][0], 1),
        "node_second_half_mib": round(marks[2][1] - marks[1][1], 1),
    }


async def drained(handles: list[JobHandle], timeout: float) -> tuple[float, int]:
    """Seconds until every handle is done (or ``timeout``), and how many never were."""
    began = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*handles, return_exceptions=True), timeout)
    return time.monotonic() - began, sum(1 for h in handles if not h.done())


async def recovery(d: Distributor, n: int = 100) -> list[float]:
    """Start latencies (enqueue to the body's start) of ``n`` jobs sent one at a time."""
    waits = []
    for _ in range(n):
        sent = time.time()
        result = await asyncio.wait_for(d.enqueue("soak_work", {"seconds": 0.0}), 10)
        waits.append(result["started"] - sent)
    return waits


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    config = Config(heartbeat_interval=0.5, log_job_processing=False, max_waiting_jobs=ns.waiting)
    tmp = Path(tempfile.mkdtemp(prefix="reactor-overload-"))
    async with Distributor("127.0.0.1", 0, config=config) as d:
        node = NodeProcess(
            "overload",
            [d.address],
            jobs=JOBS,
            capacity=ns.capacity,
            settings={"log_job_processing": False},
            log_path=tmp / "node.log",
        )
        with node:
            deadline = time.monotonic() + 30
            while not d.node_alive("overload"):
                if time.monotonic() > deadline or node.proc.poll() is not None:
                    raise SystemExit(f"the node did not connect: {node.output()[-2000:]}")
                await asyncio.sleep(0.05)
            figures = await burst(d, ns.seconds, node.pid)
            handles = figures.pop("handles")
            drain_s, lost = await drained(handles, max(120.0, 2 * ns.seconds))
            waits = await recovery(d)
    failed = 0
    for h in handles:
        if h.done():
            try:
                h.result(0)
            except Exception:  # counted: no accepted job may fail here
                failed += 1
    return {
        "case": "overload",
        "seconds": ns.seconds,
        "capacity": ns.capacity,
        "max_waiting_jobs": ns.waiting,
        **figures,
        "drain_after_burst_s": round(drain_s, 1),
        "lost": lost,
        "failed": failed,
        "recovery_start_p50_ms": round(1000 * percentile(waits, 50), 2),
        "recovery_start_p99_ms": round(1000 * percentile(waits, 99), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overload", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--capacity", type=int, default=2)
    parser.add_argument("--waiting", type=int, default=10_000, help="max_waiting_jobs")
    ns = parser.parse_args(argv)
    if ns.seconds <= 0 or ns.capacity < 1 or ns.waiting < 1:
        parser.error("--seconds, --capacity and --waiting must be positive")
    result = asyncio.run(run(ns))
    print(json.dumps(result))
    return 0 if result["lost"] == 0 and result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
