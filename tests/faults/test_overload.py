"""Issue 18, overload: an application enqueueing far faster than its nodes can run.

One node of capacity 2 runs ``def`` jobs of 2 ms (a few hundred a second at most); the
application enqueues in a tight loop for ``BURST`` seconds, ten to a hundred times faster. The
distributor holds at most ``max_waiting_jobs`` jobs for the node and refuses the rest with a
clear ``BackPressureError``; every process's memory levels off (the second half of the burst
grows the node and the application by a few MiB at most, not by the jobs refused); every job
it accepted ends with its outcome once the burst is over; and a job enqueued after the backlog
has drained starts within a second (latency recovers).

``benchmarks/overload.py`` runs the same thing for a minute and reports the figures.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest

from reactor import BackPressureError, Config, Distributor, JobHandle
from tests.conftest import FAST, NodeFactory, wait_for_node

from .conftest import settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]

BURST = 8.0
WAITING = 2_000
MIB = 1024 * 1024


@pytest.fixture
def config() -> Config:
    return Config(**FAST, max_waiting_jobs=WAITING)


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def burst(
    distributor: Distributor, seconds: float, sample: Callable[[], None]
) -> tuple[list[JobHandle], int, str]:
    """Enqueue as fast as one task can for ``seconds``: the accepted handles, how many were
    refused and the first refusal's message. ``sample`` runs every 0.25 s."""
    accepted: list[JobHandle] = []
    refused, message = 0, ""
    end = time.monotonic() + seconds
    next_sample = 0.0
    while (now := time.monotonic()) < end:
        if now >= next_sample:
            sample()
            next_sample = now + 0.25
        for _ in range(200):
            try:
                accepted.append(distributor.enqueue("sleep_def", {"seconds": 0.002}))
            except BackPressureError as exc:
                refused += 1
                message = message or str(exc)
        await asyncio.sleep(0)  # the distributor's loop sends, and hears feedback
    sample()
    return accepted, refused, message


async def test_a_burst_far_beyond_the_nodes_is_refused_clearly_bounded_and_loses_nothing(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    node = start_node("N", [distributor.address], capacity=2)
    await wait_for_node(distributor, "N", proc=node)
    samples: list[tuple[float, int, int]] = []
    me = os.getpid()

    def sample() -> None:
        samples.append((time.monotonic(), rss(me), rss(node.proc.pid)))

    start = time.monotonic()
    accepted, refused, message = await burst(distributor, BURST, sample)
    elapsed = time.monotonic() - start
    assert refused > len(accepted), f"the burst never outran the node ({len(accepted)} accepted)"
    assert "max_waiting_jobs" in message and "\n" not in message, message

    half = [s for s in samples if s[0] - start >= BURST / 2]
    app_growth = (max(s[1] for s in half) - half[0][1]) / MIB
    node_growth = (max(s[2] for s in half) - half[0][2]) / MIB
    print(
        f"[overload] accepted={len(accepted)} refused={refused} in {elapsed:.1f}s; second half "
        f"of the burst: application +{app_growth:.1f} MiB, node +{node_growth:.1f} MiB"
    )
    assert node_growth < 16, f"the node grew {node_growth:.1f} MiB in the burst's second half"
    assert app_growth < 32, f"the application grew {app_growth:.1f} MiB in its second half"

    t = await settle(accepted, 60.0)
    assert not t.problems(), t.summary()
    assert len(t.succeeded) == len(accepted)

    enqueued = time.time()
    result = await asyncio.wait_for(distributor.enqueue("sleep_def", {"seconds": 0.0}), 10.0)
    waited = result["started"] - enqueued
    assert waited < 1.0, f"once the backlog drained, a new job still waited {waited:.2f}s"
