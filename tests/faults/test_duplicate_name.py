"""Issue 9, case 6: a second node under the name of a live node is refused at its start.

Node ``w1`` runs; a second ``reactor node --name w1`` dials the same distributor. The second must
exit non-zero within ~10 s saying ``NodeNameTaken`` and which process holds the name (its pid); the
first keeps running jobs, and a deferred job it held from before runs exactly once and succeeds.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from reactor import Distributor
from tests.conftest import NodeFactory, wait_for_node

from .conftest import loss_problems, report, run_pids, runs, settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]


async def test_a_second_node_with_a_live_name_is_refused_and_the_first_keeps_working(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    first = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=first)
    path = tmp_path / "ran.txt"
    deferred = distributor.enqueue(
        "sleep_def", {"path": str(path), "tag": "deferred"}, node="w1", after=1.0
    )
    start = time.monotonic()
    second = start_node("w1", [distributor.address])
    problems: list[str] = []
    try:
        code: int | None = await asyncio.to_thread(second.wait, 10.0)
    except subprocess.TimeoutExpired:
        code = None
        problems.append("the second w1 still runs 10 s after it started")
    else:
        if code == 0:
            problems.append("the second w1 exited 0")
    out = second.output()
    taken = [line for line in out.splitlines() if "NodeNameTaken" in line]
    if not taken:
        problems.append("the second w1 never said NodeNameTaken")
    elif not any(str(first.pid) in line for line in taken):
        problems.append(f"NodeNameTaken does not name the holder's pid {first.pid}: {taken[:2]}")
    # The first keeps working: new jobs, and the deferred job from before, run on it.
    tags = [f"w{i}" for i in range(5)]
    handles = [
        distributor.enqueue("sleep_def", {"path": str(path), "tag": tag}, node="w1") for tag in tags
    ]
    t = await settle([deferred, *handles], 8.0)
    ran = runs(path)
    pids = run_pids(path)
    report("duplicate-name", t, ran, time.monotonic() - start, second_exit=code)
    problems += loss_problems(t, ran, ["deferred", *tags])
    if ran["deferred"] != 1:
        problems.append(f"the deferred job ran {ran['deferred']} times, not once")
    elsewhere = sorted({p for tag in tags for p in pids.get(tag, []) if p != first.pid})
    if elsewhere:
        problems.append(f"jobs pinned to w1 ran in {elsewhere}, not in the first w1 {first.pid}")
    if first.proc.poll() is not None:
        problems.append(f"the first w1 exited with {first.proc.returncode}")
    assert not problems, "; ".join(problems) + f"\nsecond w1's log:\n{out[-1500:]}"
