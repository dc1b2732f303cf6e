"""The cost of flow control (issue 20): the same drain of no-op jobs through one node process,
plain, with a concurrency key and with a rate limit, each set high enough never to make a job
wait, so the difference is what checking a limit costs per job.

Modes: ``plain`` (no limit: the one attribute check of the start rule), ``concurrency_key`` and
``rate_limit`` with the node's memory gate (no ``limits_store``), and, when Redis is available,
``concurrency_key_redis`` and ``rate_limit_redis`` on a node whose ``limits_store`` is Redis (one
script round trip per start, one more per release). The modes take turns within each round so
the machine's drift is shared; the median round is reported, and each limited mode's overhead in
microseconds per job against ``plain``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.harness import Counter, Options, Result, Scratch, app_running
from benchmarks.services import DB_REACTOR, Services, redis_available
from reactor import Config

WARMUP = 200
#: Far above any drain rate: a limit that is checked but never reached.
HIGH = 1_000_000
FLOW: dict[str, dict[str, Any]] = {
    "plain": {},
    "concurrency_key": {"concurrency_key": "bench", "concurrency_limit": HIGH},
    "rate_limit": {"rate_key": "bench", "rate_limit": f"{HIGH}/s"},
}


def limits(opts: Options, services: Services) -> Result:
    """Drain ``n`` jobs per mode and round (at most 20,000: the Redis modes are slower)."""
    n = min(opts.n, 20_000)
    redis = not opts.skip_redis and redis_available() is None
    rates: dict[str, list[float]] = {}
    # Each mode's jobs go to its node only (a busy node's jobs would otherwise go to the other).
    config = Config(always_use_specified_node=True)
    with app_running(config) as app, Scratch() as scratch:
        nodes = {"memory": scratch.node("limits-memory", app)}
        if redis:
            store = services.redis_url(DB_REACTOR)
            settings = {"limits_store": store}
            nodes["redis"] = scratch.node("limits-redis", app, settings=settings)
        enqueue = app.distributor.enqueue
        for node in nodes.values():  # imports, connections and scripts are not timed
            for flow in FLOW.values():
                counter = Counter(WARMUP)
                for _ in range(WARMUP):
                    enqueue("bench_noop", {"i": -1}, node=node.name, on_success=counter, **flow)
                counter.wait(60, "limits warm-up")
        for _ in range(opts.repeat):
            for where, node_name in ((w, p.name) for w, p in nodes.items()):
                for mode, flow in FLOW.items():
                    if where == "redis" and mode == "plain":
                        continue  # a plain job never touches the limits store
                    label = mode if where == "memory" else f"{mode}_redis"
                    counter = Counter(n)
                    started = time.perf_counter()
                    for i in range(n):
                        enqueue("bench_noop", {"i": i}, node=node_name, on_success=counter, **flow)
                    counter.wait(60 + n / 200, f"limits {label}")
                    rates.setdefault(label, []).append(n / (counter.last_at - started))
    figures: dict[str, Any] = {"n": n}
    base = statistics.median(rates["plain"])
    for label, runs in rates.items():
        rate = statistics.median(runs)
        figures[f"{label}_jobs_per_s"] = round(rate)
        if label != "plain":
            figures[f"{label}_overhead_us_per_job"] = round(1e6 / rate - 1e6 / base, 1)
    return Result("limits", True, figures)
