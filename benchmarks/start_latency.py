"""The ``start_latency`` case: enqueue → job start latency at half the maximum drain rate.

Issue 19's target is p99 < 2 ms at half the rate one node sustains, so the rate is measured in
the same run on the same node first: ``n`` no-op jobs enqueued as fast as possible, first
enqueue to last feedback. Then jobs are paced at half that rate for at least 3 s (``latency_n``
jobs if more; just those with ``--quick``) and each job hands back its own start time (one
clock, one machine). A fixed rate (the ``latency`` case's 200/s) says little about a loaded
node; half the measured maximum keeps the node busy about half of the time on any machine,
which is where queueing starts to show in the tail. The window is seconds long because a p99
over a fraction of a second is one hiccup's, and it shows whether the paced rate is sustained.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.harness import (
    Counter,
    Options,
    Result,
    Scratch,
    app_running,
    exactly_once,
    summary_ms,
)
from benchmarks.services import Services

#: The p99 issue 19 asks for, in milliseconds.
TARGET_P99_MS = 2.0
#: The least time the paced jobs span (full runs; ``--quick`` times ``latency_n`` jobs).
SECONDS = 3.0
#: Jobs before the timed ones, so imports and connections are not timed (their i is negative).
WARMUP = 200


def start_latency(opts: Options, services: Services) -> Result:
    """Max drain rate, then enqueue → start latency of jobs paced at half of it."""
    drain_n = opts.n
    start_lat: dict[int, float] = {}

    def on_success(args: dict[str, Any]) -> None:
        start_lat[args["i"]] = args["started"] - args["t"]
        timed(args)

    with app_running() as app, Scratch() as scratch:
        out = scratch.path("start_latency")
        scratch.node("bench-start-latency", app, out=out)
        enqueue = app.distributor.enqueue
        warm = Counter(WARMUP)
        for _ in range(WARMUP):
            enqueue("bench_noop", {"i": -1}, on_success=warm)
        warm.wait(30, "warm-up")
        drained = Counter(drain_n)
        began = time.perf_counter()
        for i in range(drain_n):
            enqueue("bench_noop", {"i": i}, on_success=drained)
        drained.wait(60 + drain_n / 500, "start_latency drain")
        max_rate = drain_n / (drained.last_at - began)
        rate = max_rate / 2
        # At least SECONDS of paced jobs: a p99 over a fraction of a second is one hiccup's.
        n = max(opts.latency_n, 0 if opts.quick else round(rate * SECONDS))
        timed = Counter(n)  # on_success's: no timed job is enqueued before this line
        time.sleep(0.2)  # the node's loop settles after the burst
        began = time.perf_counter()
        for k in range(n):
            delay = began + k / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            enqueue("bench_timed", {"i": drain_n + k, "t": time.time()}, on_success=on_success)
        achieved = n / (time.perf_counter() - began)
        timed.wait(30, "start_latency")
        checks = exactly_once(out, drain_n + n, drained.count + timed.count)
    figures: dict[str, Any] = {
        "n": n,
        "drain_n": drain_n,
        "max_jobs_per_s": round(max_rate),
        "target_rate_per_s": round(rate),
        "rate_per_s": round(achieved),
        **summary_ms("start", list(start_lat.values())),
        **checks,
    }
    figures["p99_under_2ms"] = figures["start_p99_ms"] < TARGET_P99_MS
    return Result("start_latency", bool(checks["exactly_once"]), figures)
