"""Issue 22: reactor_jobs_cancelled_total counts a job destroyed with `reactor monitor destroy`
(the node reads the missing record, with its tombstone, as a cancel when the job comes due)."""

from __future__ import annotations

import asyncio

import pytest

from reactor import Distributor, JobCancelledError
from reactor.cli import main
from reactor.testing import async_wait_until, free_port

from ..conftest import NodeFactory, scrape, value, wait_for_node

pytestmark = pytest.mark.redis


async def test_a_destroyed_job_is_counted_as_cancelled(
    distributor: Distributor, start_node: NodeFactory, redis_url: str
) -> None:
    port = free_port()
    node = start_node("d1", [distributor.address], storage=redis_url,
                      extra=["--metrics-port", str(port)])  # fmt: skip
    await wait_for_node(distributor, "d1", proc=node)
    handle = distributor.enqueue("record", {}, after=1.0)
    await async_wait_until(lambda: distributor.unstored_count() == 0, 10, 0.02)  # stored
    code = await asyncio.to_thread(main, ["monitor", "--redis", redis_url, "destroy", handle.id,
                                          "--yes"])  # fmt: skip
    assert code == 0
    with pytest.raises(JobCancelledError):
        await asyncio.wait_for(handle, 10)
    cancelled = 'reactor_jobs_cancelled_total{job_name="record"}'
    await async_wait_until(lambda: value(scrape(port), cancelled) == 1, 10, 0.05)
