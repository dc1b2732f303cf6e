"""Issue 12: a job retried from the monitor runs again on its node and completes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reactor import Distributor, JobFailed
from reactor.cli import main
from reactor.node.keeper import RETRY_WAIT
from reactor.ops.monitor import RedisMonitor
from reactor.testing import async_wait_until

from ..conftest import NodeFactory, lines, wait_for_node

pytestmark = pytest.mark.redis


async def test_failed_job_retried_from_the_monitor_completes(
    distributor: Distributor, start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    settings = {"max_attempt": 1, "remove_done_jobs": False}
    node = start_node("r1", [distributor.address], storage=redis_url, settings=settings)
    await wait_for_node(distributor, "r1", proc=node)
    path, gate = tmp_path / "attempts.txt", tmp_path / "gate"
    handles = [
        distributor.enqueue("gated", {"path": str(path), "gate": str(gate)}) for _ in range(2)
    ]
    for handle in handles:
        with pytest.raises(JobFailed, match="gate"):
            await asyncio.wait_for(handle, 10)
    with RedisMonitor(redis_url) as monitor:

        def status(job_id: str) -> str:
            return str((monitor.load(job_id) or {}).get("status"))

        await async_wait_until(lambda: all(status(h.id) == "failed" for h in handles), 5)
        gate.touch()
        asked = time.monotonic()
        assert monitor.retry(handles[0].id) is True  # the Python API
        await async_wait_until(lambda: status(handles[0].id) == "complete", 10)
        took = time.monotonic() - asked
        assert took < RETRY_WAIT, f"the retry waited for a poll ({took:.2f}s), not a push"
        assert main(["monitor", "--redis", redis_url, "retry", handles[1].id]) == 0  # the CLI
        await async_wait_until(lambda: status(handles[1].id) == "complete", 10)
        record = monitor.load(handles[1].id)
        assert record is not None and record["attempt"] == 1 and not record.get("last_error")
    assert len(lines(path)) == 4  # two failed attempts, two retried ones
    assert node.proc.poll() is None
