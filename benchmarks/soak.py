"""Soak: a steady stream of mixed jobs for M minutes, watching for anything that grows.

    python -m benchmarks.soak --minutes 30 [--rate 200] [--kill-every 180] [--window 300]

One application (a distributor in this process) enqueues ``--rate`` jobs a second: short work
(70 %), deferred by 1-10 s (10 %), failing once then retried (10 %), always failing (10 %), plus
four periodic jobs that tick all along. Three nodes run them: ``mem`` (memory storage) and ``red``
(Redis storage) live for the whole run; ``victim`` is SIGKILLed and started again every
``--kill-every`` seconds, alternating between memory and Redis storage. A throwaway redis-server
holds the Redis records; failed records are removed (``remove_failed_jobs``), so its key count is
bounded by the retention settings plus the jobs in flight.

Every 10 s it samples the RSS and open file descriptors of the application and of the two
long-lived nodes, and Redis's key count and memory. After a warm-up (the first fifth of the run,
at least one minute), it reports the slope of each (least squares, per 10 minutes) and the
end-to-end latency (enqueue to feedback, immediate jobs) p50/p99 per ``--window`` seconds. The
last line is one JSON object. The issue's targets: RSS < 1 MiB per 10 minutes per process, fds
constant, Redis keys bounded, p99 steady.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import percentile
from reactor import Config, Distributor, JobHandle
from reactor.testing.redis_server import RedisServer
from reactor.testing.support import NodeProcess

JOBS = Path(__file__).parent / "jobs"  # soak_jobs.py (and the drain jobs, unused here)
SAMPLE = 10.0
MIB = 1024 * 1024
NODE_SETTINGS = {"remove_failed_jobs": True, "retry_multiplier": 0.2, "log_job_processing": False}


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per 600 s (0 with fewer than 2)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    if not den:
        return 0.0
    return 600.0 * sum((p[0] - mx) * (p[1] - my) for p in points) / den


class Soak:
    """The run's processes, its stream and its samples."""

    def __init__(self, ns: argparse.Namespace, distributor: Distributor, redis: RedisServer):
        self.ns = ns
        self.d = distributor
        self.redis = redis
        self.rc = redis.client()
        self.tmp = Path(tempfile.mkdtemp(prefix="reactor-soak-"))
        self.nodes: dict[str, NodeProcess] = {}
        self.victim_redis = False
        self.rng = random.Random(ns.seed)
        self.samples: list[dict[str, float]] = []
        #: Latencies (seconds) of the current window; each window ends as a summary, so the
        #: benchmark's own memory stays flat.
        self.latencies: list[float] = []
        self.window_start = 0.0
        self.windows: list[dict[str, float]] = []
        self.outcomes = {"success": 0, "failure": 0}
        self.enqueued = 0
        self.kills = 0
        self.t0 = time.monotonic()

    def start_node(self, name: str, storage: str) -> None:
        self.nodes[name] = NodeProcess(
            name,
            [self.d.address],
            jobs=JOBS,
            storage=storage,
            settings=NODE_SETTINGS,
            log_path=self.tmp / f"{name}.log",
        )

    def _feedback(self, kind: str, began: float | None) -> Any:
        def done(args: Any) -> None:
            self.outcomes[kind] += 1
            if began is not None:
                now = time.monotonic()
                while now - self.t0 >= self.window_start + self.ns.window:
                    self.close_window()
                self.latencies.append(now - began)

        return done

    def close_window(self) -> None:
        """Summarise the current latency window and start the next."""
        lat = self.latencies
        if lat:
            self.windows.append(
                {
                    "from_s": self.window_start,
                    "jobs": len(lat),
                    "p50_ms": round(1000 * percentile(lat, 50), 1),
                    "p99_ms": round(1000 * percentile(lat, 99), 1),
                }
            )
        self.latencies = []
        self.window_start += self.ns.window

    def enqueue_one(self) -> JobHandle:
        roll = self.rng.random()
        i = self.enqueued
        self.enqueued += 1
        opts: dict[str, Any] = {}
        if roll < 0.7:
            name, began = "soak_work", time.monotonic()
        elif roll < 0.8:
            name, began = "soak_work", None
            opts["after"] = self.rng.uniform(1.0, 10.0)
        else:
            name, began = ("soak_flaky" if roll < 0.9 else "soak_fail"), None
        return self.d.enqueue(
            name,
            {"k": i},
            on_success=self._feedback("success", began),
            on_error=self._feedback("failure", None),
            **opts,
        )

    async def stream(self, end: float) -> None:
        """``--rate`` jobs a second, in 50 ms batches, until ``end``."""
        per_tick = self.ns.rate / 20
        owed = 0.0
        while time.monotonic() < end:
            owed += per_tick
            while owed >= 1:
                owed -= 1
                self.enqueue_one()
            await asyncio.sleep(0.05)

    async def nemesis(self, end: float) -> None:
        """SIGKILL the victim every ``--kill-every`` seconds and start it again."""
        while time.monotonic() + self.ns.kill_every < end:
            await asyncio.sleep(self.ns.kill_every)
            self.nodes["victim"].signal(signal.SIGKILL)
            self.nodes["victim"].wait(10)
            self.kills += 1
            self.victim_redis = not self.victim_redis
            self.start_node("victim", self.redis.url if self.victim_redis else "memory")

    def sample(self) -> None:
        for name in ("mem", "red"):
            node = self.nodes[name]
            if node.proc.poll() is not None:
                raise SystemExit(f"node {name} exited: {node.output()[-2000:]}")
        row: dict[str, float] = {"t": time.monotonic() - self.t0}
        for name, pid in (
            ("app", os.getpid()),
            ("mem", self.nodes["mem"].pid),
            ("red", self.nodes["red"].pid),
        ):
            proc = psutil.Process(pid)
            row[f"{name}_rss_mib"] = proc.memory_info().rss / MIB
            row[f"{name}_fds"] = proc.num_fds()
        info = self.rc.info()
        row["redis_keys"] = sum(
            v["keys"] for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
        )
        row["redis_mib"] = info["used_memory"] / MIB
        self.samples.append(row)

    async def sampler(self, end: float) -> None:
        while time.monotonic() < end:
            self.sample()
            print(json.dumps({"sample": {k: round(v, 2) for k, v in self.samples[-1].items()}}))
            await asyncio.sleep(SAMPLE)

    def report(self) -> dict[str, Any]:
        warm = max(60.0, 0.2 * self.ns.minutes * 60)
        after = [s for s in self.samples if s["t"] >= warm]
        keys = [k for k in self.samples[0] if k != "t"] if self.samples else []
        slopes = {f"{k}_per_10min": round(slope([(s["t"], s[k]) for s in after]), 3) for k in keys}
        self.close_window()
        return {
            "case": "soak",
            "minutes": self.ns.minutes,
            "rate": self.ns.rate,
            "enqueued": self.enqueued,
            **self.outcomes,
            "victim_kills": self.kills,
            "warmup_s": warm,
            "slopes": slopes,
            "max": {k: round(max(s[k] for s in after), 2) for k in keys} if after else {},
            "latency_windows": self.windows,
        }


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    redis = RedisServer()
    redis.start()
    config = Config(heartbeat_interval=0.5, heartbeat_timeout=3.0, log_job_processing=False)
    d = Distributor("127.0.0.1", 0, config=config)
    await d.start()
    soak = Soak(ns, d, redis)
    try:
        soak.start_node("mem", "memory")
        soak.start_node("red", redis.url)
        soak.start_node("victim", "memory")
        for i in range(4):
            d.enqueue("soak_tick", {"k": -1 - i}, period=2.0)
        end = time.monotonic() + ns.minutes * 60
        await asyncio.gather(soak.stream(end), soak.nemesis(end), soak.sampler(end))
        return soak.report()
    finally:
        for proc in soak.nodes.values():
            proc.__exit__(None, None, None)
        await d.stop()
        redis.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200.0, help="jobs enqueued per second")
    parser.add_argument("--kill-every", type=float, default=180.0, help="seconds")
    parser.add_argument("--window", type=int, default=300, help="latency window, seconds")
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args(argv)
    if ns.minutes <= 0 or ns.rate <= 0 or ns.kill_every <= 0 or ns.window <= 0:
        parser.error("--minutes, --rate, --kill-every and --window must be positive")
    result = asyncio.run(run(ns))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
