"""In-process Redis drain for counting instructions (callgrind), with and without write-ahead.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \\
        .venv/bin/python -m benchmarks.write_ahead_drain REDIS_URL N [--no-write-ahead]

The distributor and the node share one process and one event loop (no ZeroMQ hop between
processes, redis-server aside), so two runs with different N give the instructions per job by
difference. ``--no-write-ahead`` runs the node as it was before write-ahead attempts (the
attempt write coalesced with the outcome's, bodies starting at once), for the comparison.
"""

from __future__ import annotations

import asyncio
import sys
import time

from reactor import Config, Distributor, Node
from reactor.jobs.registry import JobRegistry


def _noop(args: dict[str, object]) -> None:
    args["ok"] = True


async def main(url: str, n: int, write_ahead: bool) -> None:
    config = Config(log_job_processing=False)
    registry = JobRegistry()
    registry.define("noop", _noop)
    async with Distributor("127.0.0.1", 0, config=config) as d:
        node = Node("cg", distributors=[d.address], storage=url, registry=registry, config=config)
        await node.start()
        if not write_ahead:
            node._ahead = None
        began, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(d.enqueue("noop", {"i": i}) for i in range(n)))
        took, cpu = time.monotonic() - began, time.process_time() - cpu
        batches = getattr(node.storage, "batches", 0)
        await node.stop()
    print(
        f"{n} jobs in {took:.2f}s ({n / took:,.0f}/s), {cpu / n * 1e6:.0f} us CPU per job, "
        f"{batches} pipelines, write-ahead {write_ahead}"
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), "--no-write-ahead" not in sys.argv))
