"""reactor's cases: end-to-end drain, enqueue rate, latency at a steady rate, timer precision
and memory per job. Each starts its own application (distributor thread) and node process."""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from benchmarks.harness import (
    ROOT,
    App,
    CaseError,
    Counter,
    CpuMeter,
    Options,
    Result,
    Scratch,
    app_running,
    exactly_once,
    note,
    read_lines,
    summary_ms,
)
from benchmarks.profiling import Profiler
from benchmarks.services import DB_REACTOR, Services

WARMUP = 200
#: Comma-separated tags every drained job gets (unset: untagged), to measure what tags cost.
TAGS_ENV = "REACTOR_BENCH_TAGS"


def _warm_up(app: App) -> None:
    """A few jobs first, so imports and connections are not timed (their i is negative)."""
    counter = Counter(WARMUP)
    for _ in range(WARMUP):
        app.distributor.enqueue("bench_noop", {"i": -1}, on_success=counter)
    counter.wait(30, "warm-up")


def drain(opts: Options, services: Services, *, redis: bool) -> Result:
    """N no-op jobs from the application through one node process until the last feedback,
    ``repeat`` times on the same node; the median run is reported."""
    case = "drain_redis" if redis else "drain_memory"
    n, repeat = opts.n, opts.repeat
    tags = [t for t in os.environ.get(TAGS_ENV, "").split(",") if t]
    storage = services.redis_url(DB_REACTOR) if redis else "memory"
    profiler: Profiler | None = None
    runs: list[float] = []
    enqueue_seconds: list[float] = []
    feedbacks = 0
    with app_running() as app, Scratch() as scratch:
        out = scratch.path(case)
        node = scratch.node(case.replace("_", "-"), app, storage=storage, out=out)
        _warm_up(app)
        if opts.profile is not None:
            targets = {f"{case}-node": node.pid, f"{case}-app": os.getpid()}
            profiler = Profiler(opts.profile, targets)
            profiler.start()
            scratch.callback(profiler.stop)
            time.sleep(0.5)  # py-spy attaches
        pids = {"app": os.getpid(), "node": node.pid}
        if redis:
            pids["redis"] = services.redis().pid or 0
        meter = CpuMeter(pids)
        enqueue = app.distributor.enqueue
        if tags:  # the cost of tags per job (issue 23); untagged runs call enqueue as before
            enqueue = functools.partial(enqueue, tags=tags)
        for run in range(repeat):
            counter = Counter(n)
            started = time.perf_counter()
            for i in range(run * n, (run + 1) * n):
                enqueue("bench_noop", {"i": i}, on_success=counter)
            enqueue_seconds.append(time.perf_counter() - started)
            counter.wait(60 + n / 500, case)
            runs.append(n / (counter.last_at - started))
            feedbacks += counter.count
        cpu = meter.percent()
        if profiler is not None:
            profiler.stop()
        checks = exactly_once(out, n * repeat, feedbacks)
        lines = read_lines(out)
    figures: dict[str, Any] = {
        "n": n,
        "storage": "redis" if redis else "memory",
        "jobs_per_s": round(statistics.median(runs)),
        "runs_jobs_per_s": [round(r) for r in runs],
        "enqueue_seconds": round(statistics.median(enqueue_seconds), 3),
        **cpu,
    }
    paces = [_pace([t for i, t in lines if run * n <= i < (run + 1) * n]) for run in range(repeat)]
    if all(paces):
        # The node's own pace: first to last job start, as the peers' drain is measured.
        figures["node_jobs_per_s"] = round(statistics.median(paces))
    figures.update(checks)
    result = Result(case, bool(checks["exactly_once"]), figures)
    if profiler is not None:
        result.profile = profiler.report()
        (profiler.out_dir / f"{case}-summary.txt").write_text(result.profile + "\n")
    return result


def _pace(starts: list[float]) -> float:
    """Jobs per second between the first and the last start time (0 when undefined)."""
    if len(starts) < 2 or max(starts) <= min(starts):
        return 0.0
    return (len(starts) - 1) / (max(starts) - min(starts))


def enqueue_rate(opts: Options, services: Services) -> Result:
    """``enqueue`` calls per second from one application thread and from four, with a node
    connected and draining (the distributor's loop thread shares the process); ``repeat``
    rounds, medians reported. First, one round from one thread with no node connected (the
    jobs wait in the distributor, then go to the node when it connects)."""
    n = opts.n
    rates: dict[int, list[float]] = {1: [], 4: []}
    with app_running() as app, Scratch() as scratch:
        out = scratch.path("enqueue")
        counter = Counter(0)
        no_node = _produce(app, counter, 0, n, 1)
        total = n
        scratch.node("bench-enqueue", app, out=out)
        wait_until_count(counter, total, 60 + n / 500)
        _warm_up(app)
        for _ in range(opts.repeat):
            for threads in (1, 4):
                per = n // threads
                rates[threads].append(_produce(app, counter, total, per, threads))
                total += per * threads
                wait_until_count(counter, total, 60 + n / 500)
        checks = exactly_once(out, total, counter.count)
    figures: dict[str, Any] = {"n": n, "threads_1_no_node_per_s": round(no_node)}
    for threads, values in rates.items():
        figures[f"threads_{threads}_per_s"] = round(statistics.median(values))
        figures[f"runs_threads_{threads}_per_s"] = [round(v) for v in values]
    figures.update(checks)
    return Result("enqueue", bool(checks["exactly_once"]), figures)


def _produce(app: App, counter: Counter, base: int, per: int, threads: int) -> float:
    """Enqueue ``per`` jobs from each of ``threads`` threads at once; returns jobs/s."""
    barrier = threading.Barrier(threads + 1)

    def produce(first: int) -> None:
        enqueue = app.distributor.enqueue
        barrier.wait()
        for i in range(first, first + per):
            enqueue("bench_noop", {"i": i}, on_success=counter)

    workers = [
        threading.Thread(target=produce, args=(base + k * per,), daemon=True)
        for k in range(threads)
    ]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return per * threads / (time.perf_counter() - started)


def wait_until_count(counter: Counter, count: int, timeout: float) -> None:
    """Wait until ``counter`` has seen ``count`` calls."""
    deadline = time.monotonic() + timeout
    while counter.count < count:
        if time.monotonic() > deadline:
            raise CaseError(f"{counter.count} of {count} feedbacks within {timeout:.0f}s")
        time.sleep(0.01)


def latency(opts: Options, services: Services) -> Result:
    """Enqueue → job start and enqueue → feedback at a steady rate (one clock, one machine)."""
    n, rate = opts.latency_n, opts.latency_rate
    start_lat = [0.0] * n
    feedback_lat = [0.0] * n
    counter = Counter(n)

    def on_success(args: dict[str, Any]) -> None:
        now = time.time()
        i = args["i"]
        start_lat[i] = args["started"] - args["t"]
        feedback_lat[i] = now - args["t"]
        counter(args)

    with app_running() as app, Scratch() as scratch:
        out = scratch.path("latency")
        scratch.node("bench-latency", app, out=out)
        _warm_up(app)
        time.sleep(0.2)
        enqueue = app.distributor.enqueue
        begin = time.perf_counter()
        for i in range(n):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            enqueue("bench_timed", {"i": i, "t": time.time()}, on_success=on_success)
        achieved = n / (time.perf_counter() - begin)
        counter.wait(30, "latency")
        checks = exactly_once(out, n, counter.count)
    figures: dict[str, Any] = {
        "n": n,
        "rate_per_s": round(achieved, 1),
        **summary_ms("start", start_lat),
        **summary_ms("feedback", feedback_lat),
        **checks,
    }
    return Result("latency", bool(checks["exactly_once"]), figures)


def timers(opts: Options, services: Services) -> Result:
    """Lateness of deferred jobs: start time minus due time, due times spread over a few s."""
    n, spread = opts.timer_n, opts.timer_spread
    lateness = [0.0] * n
    counter = Counter(n)

    def on_success(args: dict[str, Any]) -> None:
        lateness[args["i"]] = args["started"] - args["due"]
        counter(args)

    with app_running() as app, Scratch() as scratch:
        out = scratch.path("timers")
        scratch.node("bench-timers", app, out=out)
        _warm_up(app)
        enqueue = app.distributor.enqueue
        base = time.time() + 1.0  # every job is stored on the node well before it is due
        for i in range(n):
            due = base + spread * i / n
            enqueue("bench_timed", {"i": i, "due": due}, run_at=due, on_success=on_success)
        counter.wait(spread + 30, "timers")
        checks = exactly_once(out, n, counter.count)
    figures: dict[str, Any] = {
        "n": n,
        "spread_s": spread,
        **summary_ms("late", lateness),
        "late_min_ms": round(min(lateness) * 1000, 3),
        **checks,
    }
    return Result("timers", bool(checks["exactly_once"]), figures)


def memory(opts: Options, services: Services) -> list[Result]:
    """RSS per job: a node holding deferred jobs, and a distributor holding waiting jobs.

    Each runs in a fresh interpreter (``benchmarks.memprobe``) so earlier cases' heaps do not
    hide the growth.
    """
    results = []
    for mode, case in (("deferred", "memory_node"), ("waiting", "memory_distributor")):
        try:
            figures = _probe(mode, opts.memory_n)
        except CaseError as exc:
            results.append(Result(case, False, {}, str(exc)))
            continue
        ok = figures.pop("ok", False)
        error = figures.pop("error", "")
        results.append(Result(case, bool(ok), figures, error))
    return results


def _probe(mode: str, n: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.memprobe", mode, str(n)]
    note(f"  memprobe {mode} {n:,}")
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=120 + n / 1000, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CaseError(f"memprobe {mode} did not finish in time") from exc
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            figures: dict[str, Any] = json.loads(line)
            return figures
    raise CaseError(f"memprobe {mode} failed: {done.stderr[-2000:]}")
