"""Two distributors (two applications) and three nodes, each node serving both distributors.

Feedback goes back to the distributor that sent each job. Run from the repository root:
python examples/two_distributors_three_nodes.py
"""

import asyncio
from collections import Counter

from reactor import Config, Distributor
from reactor.testing.support import NodeProcess, free_port


async def main() -> None:
    config = Config(log_job_processing=False)
    ports = [free_port(), free_port()]
    async with (
        Distributor("127.0.0.1", ports[0], config=config) as d1,
        Distributor("127.0.0.1", ports[1], config=config) as d2,
    ):
        addresses = [d1.address, d2.address]
        nodes = [NodeProcess(f"node_{i}", addresses, jobs="reactor_jobs") for i in range(3)]
        try:
            handles = [
                d.enqueue("fetch", {"url": f"/{d.port}/{i}", "delay": 0.2})
                for i in range(30)
                for d in (d1, d2)
            ]
            results = await asyncio.wait_for(asyncio.gather(*handles), 30)
            print(
                f"{len(results)} jobs done; per distributor:",
                Counter(r["url"].split("/")[1] for r in results),
            )
            for d in (d1, d2):
                print(d.address, "sees", [(n["name"], n["alive"]) for n in d.snapshot()["nodes"]])
        finally:
            for node in nodes:
                node.terminate()


asyncio.run(main())
