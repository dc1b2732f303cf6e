"""Enqueue throughput with and without the durable outbox, from several threads.

``python -m benchmarks.outbox_enqueue [JOBS] [THREADS]``: starts a throwaway redis-server (no
persistence, so the figure is reactor's cost, not the disk's), a distributor with
``outbox=`` and one without (no node: only ``enqueue`` is timed), and prints jobs/s for each.
"""

from __future__ import annotations

import sys
import threading
import time

from reactor import Config, Distributor
from reactor.app.runtime import Runtime
from reactor.testing.redis_server import RedisServer


def measure(runtime: Runtime, jobs: int, threads: int) -> float:
    """Jobs/s enqueued through ``runtime``'s distributor by ``threads`` threads."""

    def work() -> None:
        for i in range(jobs // threads):
            runtime.enqueue("noop", {"i": i})

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (jobs // threads * threads) / (time.perf_counter() - started)


def main(jobs: int = 20_000, threads: int = 4) -> None:
    with RedisServer(extra_args=["--appendonly", "no"]) as server:
        for outbox in (server.url, None):
            runtime = Runtime(Config())
            distributor: Distributor = runtime.start_distributor(
                "127.0.0.1", 0, outbox=outbox, group="bench"
            )
            rate = measure(runtime, jobs, threads)
            label = "with the outbox" if outbox else "without an outbox"
            print(f"{jobs} jobs from {threads} threads {label}: {rate:,.0f} jobs/s")
            assert distributor.started
            runtime.stop()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
