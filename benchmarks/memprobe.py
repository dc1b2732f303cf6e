"""Memory probes, each run in a fresh interpreter: ``python -m benchmarks.memprobe MODE N``.

``deferred``: a node process holds N deferred jobs; prints its RSS growth per job (and this
distributor's, for jobs a node has stored). ``waiting``: a distributor holds N jobs with no
node connected; prints its RSS growth per job. The last stdout line is the JSON result.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

from benchmarks.harness import (
    CaseError,
    Counter,
    Scratch,
    app_running,
    settled_rss,
    wait_for,
)


def deferred(n: int) -> dict[str, Any]:
    """RSS growth of a node (and of this distributor) holding ``n`` deferred jobs."""
    me = os.getpid()
    # The application closes before the node stops: its stop then finds every job stored. The
    # other order hands the node's jobs back to a distributor that waits for another node.
    with Scratch() as scratch, app_running() as app:
        node = scratch.node("bench-memory", app)
        warm = Counter(100)
        for _ in range(100):
            app.distributor.enqueue("bench_noop", {"i": -1}, on_success=warm)
        warm.wait(30, "warm-up")
        gc.collect()
        node_before, app_before = settled_rss(node.pid), settled_rss(me)
        enqueue = app.distributor.enqueue
        for i in range(n):
            enqueue("bench_noop", {"i": i}, after=3600.0)

        def all_stored() -> bool:
            snap = app.snapshot()
            return bool(snap["unacknowledged"] == 0 and snap["in_flight"] == n)

        wait_for(all_stored, 60 + n / 1000, f"the node storing {n} deferred jobs", interval=0.1)
        gc.collect()
        node_after, app_after = settled_rss(node.pid), settled_rss(me)
    return {
        "n": n,
        "node_bytes_per_job": round((node_after - node_before) / n),
        "node_rss_before_mib": round(node_before / 2**20, 1),
        "node_rss_after_mib": round(node_after / 2**20, 1),
        "distributor_bytes_per_stored_job": round((app_after - app_before) / n),
        "ok": node_after > node_before,
    }


def waiting(n: int) -> dict[str, Any]:
    """RSS growth of a distributor holding ``n`` jobs that wait for a node."""
    me = os.getpid()
    with app_running() as app:
        gc.collect()
        before = settled_rss(me)
        enqueue = app.distributor.enqueue
        for i in range(n):
            enqueue("bench_noop", {"i": i})
        wait_for(lambda: app.snapshot()["waiting"] == n, 60, f"{n} jobs parked", interval=0.1)
        gc.collect()
        after = settled_rss(me)
    return {
        "n": n,
        "distributor_bytes_per_job": round((after - before) / n),
        "rss_before_mib": round(before / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "ok": after > before,
    }


def main(argv: list[str]) -> int:
    """Run one probe and print its JSON line."""
    mode, n = argv[0], int(argv[1])
    probes = {"deferred": deferred, "waiting": waiting}
    try:
        result = probes[mode](n)
    except CaseError as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
