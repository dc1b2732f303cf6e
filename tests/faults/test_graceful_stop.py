"""Issue 9, case 1: SIGTERM with queued ``def`` jobs loses nothing, with either storage.

A stopping node hands every job it has not started back to the distributor that owns it, which
reassigns it; the node exits 0 once the hand-back is acknowledged (DESIGN §3, graceful stop).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from reactor import Distributor
from tests.conftest import NodeFactory, start_two

from .conftest import loss_problems, report, run_pids, runs, settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def _storage(request: pytest.FixtureRequest, kind: str) -> str:
    if kind == "memory":
        return "memory"
    return str(request.getfixturevalue("redis_url"))


@pytest.mark.parametrize(
    "kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)], ids=["memory", "redis"]
)
async def test_sigterm_with_400_queued_def_jobs_loses_none(
    kind: str,
    request: pytest.FixtureRequest,
    distributor: Distributor,
    start_node: NodeFactory,
    tmp_path: Path,
) -> None:
    storage = _storage(request, kind)
    a, _ = await start_two(distributor, start_node, storage=storage)
    path = tmp_path / "ran.txt"
    tags = [f"j{i}" for i in range(400)]
    start = time.monotonic()
    handles = [
        distributor.enqueue("sleep_def", {"seconds": 0.02, "path": str(path), "tag": tag})
        for tag in tags
    ]
    await asyncio.sleep(1.0)  # the fault's timing: SIGTERM one second into the run
    a.signal(signal.SIGTERM)
    t = await settle(handles, 12.0)  # 400 x 20 ms is 8 s on one node
    try:
        code: int | None = await asyncio.to_thread(a.wait, 15.0)
    except Exception:
        code = None
    ran = runs(path)
    on_a = sum(1 for pids in run_pids(path).values() if a.pid in pids)
    report(f"sigterm-400-{kind}", t, ran, time.monotonic() - start, ran_on_a=on_a, a_exit=code)
    problems = loss_problems(t, ran, tags)
    if code != 0:
        problems.append(f"node A exited with {code} after SIGTERM, not 0")
    assert not problems, f"{kind}: " + "; ".join(problems) + f"\nA's log:\n{a.output()[-2000:]}"


@pytest.mark.parametrize(
    "kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)], ids=["memory", "redis"]
)
async def test_sigterm_with_5_jobs_pinned_to_it_loses_none(
    kind: str,
    request: pytest.FixtureRequest,
    distributor: Distributor,
    start_node: NodeFactory,
    tmp_path: Path,
) -> None:
    storage = _storage(request, kind)
    a, _ = await start_two(distributor, start_node, storage=storage)
    path = tmp_path / "ran.txt"
    tags = [f"p{i}" for i in range(5)]
    start = time.monotonic()
    handles = [
        distributor.enqueue(
            "sleep_def", {"seconds": 0.5, "path": str(path), "tag": tag}, node="A"
        )  # not strict: always_use_specified_node is False, so B may take them
        for tag in tags
    ]
    await asyncio.sleep(0.2)  # the fault's timing: SIGTERM 0.2 s in, with one job running
    a.signal(signal.SIGTERM)
    t = await settle(handles, 6.0)  # 5 x 0.5 s is 2.5 s on one node
    try:
        code: int | None = await asyncio.to_thread(a.wait, 10.0)
    except Exception:
        code = None
    ran = runs(path)
    report(f"sigterm-5-pinned-{kind}", t, ran, time.monotonic() - start, a_exit=code)
    problems = loss_problems(t, ran, tags)
    if code != 0:
        problems.append(f"node A exited with {code} after SIGTERM, not 0")
    assert not problems, f"{kind}: " + "; ".join(problems) + f"\nA's log:\n{a.output()[-2000:]}"
