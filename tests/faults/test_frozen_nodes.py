"""Issue 9, case 2: both nodes frozen past ``heartbeat_timeout`` give no phantom cancel.

SIGSTOP both of two nodes, enqueue 10 jobs, wait ``heartbeat_timeout`` + 1.5 s, SIGCONT both: a
stale node may be told to cancel its copy, but that cancel must never become the job's outcome.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from reactor import Distributor
from tests.conftest import FAST, NodeFactory, start_two

from .conftest import loss_problems, report, runs, settle

pytestmark = [pytest.mark.slow, pytest.mark.faults]


async def test_both_nodes_frozen_past_the_timeout_then_thawed_give_no_phantom_cancel(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    a, b = await start_two(distributor, start_node)
    a.signal(signal.SIGSTOP)
    b.signal(signal.SIGSTOP)
    path = tmp_path / "ran.txt"
    tags = [f"f{i}" for i in range(10)]
    start = time.monotonic()
    handles = [
        distributor.enqueue("sleep_def", {"seconds": 0.1, "path": str(path), "tag": tag})
        for tag in tags
    ]
    await asyncio.sleep(FAST["heartbeat_timeout"] + 1.5)  # the fault: frozen past the timeout
    a.signal(signal.SIGCONT)
    b.signal(signal.SIGCONT)
    t = await settle(handles, 8.0)
    ran = runs(path)
    report("frozen-both", t, ran, time.monotonic() - start)
    problems = loss_problems(t, ran, tags)
    assert not problems, "; ".join(problems)
