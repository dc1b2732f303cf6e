"""The CPU-bound cases: jobs each burning ~2 ms of pure Python, drained by one node process and by
``reactor node --processes 2`` in interleaved rounds on the same distributor (issue 19); and the
same jobs through Dramatiq ``-p 2`` and Celery prefork ``-c 2``."""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from typing import Any

from benchmarks import peer_cases
from benchmarks.appendline import burn
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
    count_lines,
    exactly_once,
    read_lines,
    stop_node,
    wait_for,
)
from benchmarks.services import Services
from reactor.testing.support import NodeProcess

#: What one job burns, in milliseconds of one core.
BURN_MS = 2.0
#: The process counts compared, in the order each round runs them.
PROCESSES = (1, 2)
WARMUP = 20
#: The peers' workers: two processes, one job at a time in each.
PEER_WORKERS = {
    "dramatiq": [
        *(sys.executable, "-m", "dramatiq", "benchmarks.peer_dramatiq"),
        *("--processes", "2", "--threads", "1"),
    ],
    "celery": peer_cases.PEERS["celery"].worker,  # prefork, concurrency 2
}


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
    paces: dict[int, list[float]] = {p: [] for p in PROCESSES}
    total = feedbacks = 0
    with app_running() as app, Scratch() as scratch:
        out = scratch.path("cpu_bound")
        for run in range(opts.repeat):
            for processes in PROCESSES:
                name = f"cpu{processes}-r{run}"
                rate, got = _drain(app, scratch, name, processes, n, loops, total, out)
                rates[processes].append(rate)
                paces[processes].append(_pace(out, total, total + n))
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
        # first to last job start, as the peers' figure is taken
        "processes_2_pace_per_s": round(statistics.median(paces[2])),
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


def _pace(out: Any, first: int, end: int) -> float:
    """Jobs per second from the first to the last start among jobs ``first .. end-1``."""
    starts = sorted(t for i, t in read_lines(out) if first <= i < end)
    return (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else 0.0


def peers(opts: Options, services: Services) -> list[Result]:
    """The same CPU-bound jobs through Dramatiq ``-p 2`` and Celery prefork ``-c 2`` (those
    installed): the queue is filled first, the rate taken from the first job start to the last."""
    if opts.skip_peers:
        return []
    results = []
    for name, worker in PEER_WORKERS.items():
        peer = peer_cases.PEERS[name]
        if peer.available() is None:
            try:
                results.append(_peer_drain(peer, worker, opts, services))
            except CaseError as exc:
                results.append(Result(f"{name}_cpu_bound", False, {}, str(exc)))
    return results


def _peer_drain(
    peer: peer_cases.Peer, worker: list[str], opts: Options, services: Services
) -> Result:
    n = 300 if opts.quick else 2_000
    loops = calibrate(BURN_MS)
    url = services.redis_url(peer.db)
    peer.sender(url)  # sets BENCH_REDIS_URL, imports the peer's module
    task = importlib.import_module(peer.module).bench_cpu
    send = task.send if peer.name == "dramatiq" else task.delay
    with Scratch() as scratch:
        out = scratch.path(f"{peer.name}-cpu")
        for i in range(n):
            send(i, loops)
        env = {"BENCH_REDIS_URL": url, OUT_ENV: str(out)}
        proc = scratch.worker(worker, env, f"{peer.name}-cpu")
        wait_for(
            lambda: count_lines(out) >= n or proc.poll() is not None,
            60 + n * BURN_MS / 500,
            f"{peer.name} draining {n} CPU-bound jobs",
            interval=0.05,
        )
        if proc.poll() is not None:
            raise CaseError(f"the {peer.name} worker exited with code {proc.returncode}")
        time.sleep(0.2)  # anything that would run twice has had a chance to
        pace = _pace(out, 0, n)
        checks = exactly_once(out, n)
    figures = {"n": n, "worker": " ".join(worker[3:]), "loops": loops, "jobs_per_s": round(pace)}
    return Result(f"{peer.name}_cpu_bound", bool(checks["exactly_once"]), {**figures, **checks})
