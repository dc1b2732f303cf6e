"""Issue 9, case 7: a short job does not wait behind a blocking ``def`` job while a node is idle.

Two nodes; one ``def`` job blocks its node's loop for 20 s, and 200 jobs of 10 ms are enqueued right
after it. The blocked node hands its queued jobs back after ``hand_back_after`` (0.5 s), so they run
on the other node; the long job still succeeds.

Issue 18: the same short jobs arriving 0.2 s or 1 s after the blocker started (while the loop is
held, before and after the hand-back) sat in the blocked node's socket until the blocker ended;
the watchdog now reads the socket during the block and refuses them, so they go to the other
node. A ``defer=True`` blocker runs in a thread and never holds the loop: the same bound holds.

The issue asks for a maximum wait under 1 s, which no scheduler can give here: 200 ``def`` jobs of
10 ms each block the one free node's loop for 2 s in all, so the last of them starts about 2 s after
it was enqueued even with no blocking job at all. The bound below is that work plus 1 s: what a job
waits beyond the short jobs queued ahead of it stays under 1 s, never the 20 s of the blocker.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from reactor import Distributor
from tests.conftest import NodeFactory, start_two

from .conftest import loss_problems, report, runs, settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]

BLOCK = 20.0
SHORT = 200
MAX_WAIT = 1.0 + SHORT * 0.010  # 1 s beyond the short jobs' own work on the free node (idle)
GAP = 1.0  # no pause this long in the free node's starts while a short job waits


async def test_short_jobs_do_not_wait_behind_a_20s_def_job(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    await _short_jobs_behind_a_blocker(distributor, start_node, tmp_path, BLOCK, 0.0, False)


@pytest.mark.parametrize(
    ("delay", "defer"),
    [(0.2, False), (1.0, False), (0.2, True)],
    ids=["def-blocker-0.2s-later", "def-blocker-1s-later", "defer-blocker-0.2s-later"],
)
async def test_short_jobs_arriving_during_the_block_do_not_wait_behind_it(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path, delay: float, defer: bool
) -> None:
    await _short_jobs_behind_a_blocker(distributor, start_node, tmp_path, 8.0, delay, defer)


async def _short_jobs_behind_a_blocker(
    distributor: Distributor,
    start_node: NodeFactory,
    tmp_path: Path,
    block: float,
    delay: float,
    defer: bool,
) -> None:
    await start_two(distributor, start_node)
    path = tmp_path / "ran.txt"
    start = time.monotonic()
    long = distributor.enqueue(
        "sleep_def", {"seconds": block, "path": str(path), "tag": "long"}, defer=defer
    )
    if delay:
        await asyncio.sleep(delay)  # the scenario: the short jobs arrive while the loop is held
    tags = [f"s{i}" for i in range(SHORT)]
    enqueued: dict[str, float] = {}
    short = []
    for tag in tags:
        enqueued[tag] = time.time()
        short.append(
            distributor.enqueue("sleep_def", {"seconds": 0.01, "path": str(path), "tag": tag})
        )
    t_short = await settle(short, block + 3.0)
    waits = {
        tags[i]: t_short.results[h.id]["started"] - enqueued[tags[i]]
        for i, h in enumerate(short)
        if h.id in t_short.results
    }
    t_long = await settle([long], block + 6.0 - (time.monotonic() - start))
    starts = sorted(r["started"] for r in t_short.results.values())
    idle = idle_waits({tag: (enqueued[tag], enqueued[tag] + w) for tag, w in waits.items()}, starts)
    ran = runs(path)
    report(
        f"head-of-line (short jobs {delay}s after a {block}s {'deferred' if defer else 'def'} job)",
        t_short,
        ran,
        time.monotonic() - start,
        max_wait=f"{max(waits.values(), default=0.0):.2f}s",
        waited_over_bound=len([w for w in waits.values() if w >= MAX_WAIT]),
        waited_while_idle=len(idle),
        long_ok=bool(t_long.succeeded),
    )
    problems = loss_problems(t_short, ran, tags)
    if idle:
        problems.append(f"{len(idle)} short jobs waited while no node ran anything: {idle[:3]}")
    problems += [f"long job: {p}" for p in loss_problems(t_long, ran, ["long"])]
    assert not problems, "; ".join(problems)


def idle_waits(spans: dict[str, tuple[float, float]], starts: list[float]) -> list[str]:
    """The short jobs that waited ``GAP`` or more while no node started a short job.

    The bound is on the delay beyond the work queued ahead of a job (``MAX_WAIT`` is that work
    on an idle machine): while a job waits, the free node must keep starting short jobs, with
    no pause of a second or more; a job held behind the blocker shows as such a pause, however
    loaded the machine is. ``spans`` maps each tag to (enqueued, started), wall clock.
    """
    found = []
    for tag, (enqueued, started) in spans.items():
        events = [enqueued, *(s for s in starts if enqueued < s < started), started]
        gap = max(b - a for a, b in itertools.pairwise(events))
        if gap >= GAP:
            found.append(f"{tag} waited {started - enqueued:.2f}s with a {gap:.2f}s pause")
    return found
