"""The CPU-bound case: jobs each burning ~2 ms of pure Python, drained by one node process and by
``reactor node --processes 2``, in interleaved rounds on the same distributor (issue 19)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.harness import (
    JOBS_DIR,
    OUT_ENV,
    App,
    CaseError,
    Counter,
    Options,
    Result,
    Scratch,
    app_running,
    exactly_once,
    stop_node,
)
from benchmarks.services import Services
from reactor.testing.support import NodeProcess

#: What one job burns, in milliseconds of one core.
BURN_MS = 2.0
#: The process counts compared, in the order each round runs them.
PROCESSES = (1, 2)
WARMUP = 20


def burn(loops: int) -> int:
    """The ``bench_cpu`` job's body (benchmarks/jobs/bench_jobs.py), for calibration."""
    total = 0
    for k in range(loops):
        total += k * k
    return total


def calibrate(ms: float) -> int:
    """Loops of :func:`burn` that take ``ms`` milliseconds here (best of 5 tries)."""
    loops = 10_000
    best = min(_timed(loops) for _ in range(5))
    return max(1, round(loops * ms / 1000 / best))


def _timed(loops: int) -> float:
    began = time.perf_counter()
    burn(loops)
    return time.perf_counter() - began


def cpu_bound(opts: Options, services: Services) -> Result:
    """N CPU-bound jobs through ``--processes 1`` then ``--processes 2``, ``repeat`` rounds;
    the median rate of each and their ratio are reported."""
    n = 300 if opts.quick else 2_000
    loops = calibrate(BURN_MS)
    rates: dict[int, list[float]] = {p: [] for p in PROCESSES}
    total = feedbacks = 0
    with app_running() as app, Scratch() as scratch:
        out = scratch.path("cpu_bound")
        for run in range(opts.repeat):
            for processes in PROCESSES:
                name = f"cpu{processes}-r{run}"
                rate, got = _drain(app, scratch, name, processes, n, loops, total, out)
                rates[processes].append(rate)
                total += n
                feedbacks += got
        checks = exactly_once(out, total, feedbacks)
    one, two = (statistics.median(rates[p]) for p in PROCESSES)
    figures: dict[str, Any] = {
        "n": n,
        "burn_ms": BURN_MS,
        "loops": loops,
        "processes_1_jobs_per_s": round(one),
        "processes_2_jobs_per_s": round(two),
        "speedup": round(two / one, 2),
        "runs_processes_1_jobs_per_s": [round(r) for r in rates[1]],
        "runs_processes_2_jobs_per_s": [round(r) for r in rates[2]],
        **checks,
    }
    return Result("cpu_bound", bool(checks["exactly_once"]), figures)


def _drain(
    app: App,
    scratch: Scratch,
    name: str,
    processes: int,
    n: int,
    loops: int,
    first: int,
    out: Any,
) -> tuple[float, int]:
    """Start ``reactor node --processes P``, warm it up, drain ``n`` jobs numbered from
    ``first``, stop it; returns (jobs/s from the first enqueue to the last feedback, feedbacks)."""
    proc = NodeProcess(
        name,
        [app.address],
        jobs=JOBS_DIR,
        settings={"log_job_processing": "false"},
        extra=["--processes", str(processes)],
        log_path=scratch.path(f"node-{name}", ".log"),
        env={OUT_ENV: str(out)},
    )
    scratch.callback(lambda: stop_node(proc))
    names = [name] if processes == 1 else [f"{name}-{i}" for i in range(1, processes + 1)]
    try:
        for node in names:
            app.wait_node(node)
    except CaseError:
        raise CaseError(f"node {name} did not connect: {proc.output()[-2000:]}") from None
    enqueue = app.distributor.enqueue
    warm = Counter(WARMUP * processes)
    for _ in range(WARMUP * processes):
        enqueue("bench_cpu", {"i": -1, "loops": loops}, on_success=warm)
    warm.wait(60, f"{name} warm-up")
    counter = Counter(n)
    started = time.perf_counter()
    for i in range(first, first + n):
        enqueue("bench_cpu", {"i": i, "loops": loops}, on_success=counter)
    counter.wait(60 + n * BURN_MS / 100, name)
    stop_node(proc)
    return n / (counter.last_at - started), counter.count
