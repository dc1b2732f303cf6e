"""A distributor and a node in one process running N trivial ``def`` jobs: the workload for
counting the per-job instructions of the metrics hooks with callgrind.

``valgrind --tool=callgrind python -m benchmarks.metrics_overhead 6000``, once on a tree with
the hooks and once on one without (``PYTHONPATH=<other tree>``); the difference of the two
totals, less the difference at a small N (start-up), divided by N is the hooks' cost per job.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from reactor import Config, Distributor
from reactor.jobs.registry import JobRegistry
from reactor.node.driver import Node


def _body(args: dict[str, Any]) -> None:
    args["ok"] = 1


async def run(jobs: int) -> None:
    """Run ``jobs`` trivial jobs through an in-process distributor and node."""
    # Under callgrind (about 50 times slower, on a busy machine) enqueueing thousands of jobs
    # blocks the loop for longer than a heartbeat timeout: the node would be declared gone and its
    # jobs re-sent, work that depends on the machine's load. Long liveness deadlines keep the
    # count of instructions the same from run to run.
    config = Config(log_job_processing=False, heartbeat_timeout=3600.0, node_lost_after=7200.0)
    distributor = Distributor("127.0.0.1", 0, config=config)
    await distributor.start()
    registry = JobRegistry()
    registry.define("t", _body)
    node = Node("n", distributors=[distributor.address], registry=registry, config=config)
    await node.start()
    await asyncio.gather(*(distributor.enqueue("t", {"i": i}) for i in range(jobs)))
    await node.stop()
    await distributor.stop()


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 6000))
