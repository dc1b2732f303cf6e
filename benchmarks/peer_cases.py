"""The peers' cases: Dramatiq and Celery on the same throwaway Redis, with the same job body.

Drain: the queue is filled first (which also gives the peer's enqueue rate), then one worker
process starts, and the rate is taken from the first job start to the last, so start-up is not
counted (this favours the peers: reactor's drain figure includes its enqueueing). Latency:
jobs at a steady rate into a running, warmed-up worker; enqueue → job start. The peers have no
feedback channel without a result backend, so there is no enqueue → feedback figure for them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.harness import (
    OUT_ENV,
    CaseError,
    Options,
    Result,
    Scratch,
    count_lines,
    exactly_once,
    read_lines,
    summary_ms,
    wait_for,
)
from benchmarks.services import DB_CELERY, DB_DRAMATIQ, Services

Send = Callable[[int], Any]


class Peer:
    """How to enqueue into one peer framework and how to start its worker."""

    def __init__(self, name: str, module: str, db: int, worker: Sequence[str], how: str) -> None:
        self.name = name
        self.module = module
        self.db = db
        self.worker = list(worker)
        self.how = how

    def available(self) -> str | None:
        """None when installed, else why not."""
        if importlib.util.find_spec(self.name) is None:
            return f"{self.name} is not installed (pip install -e '.[bench]')"
        return None

    def version(self) -> str:
        """The installed version."""
        return importlib.metadata.version(self.name)

    def sender(self, url: str) -> Send:
        """The application's ``send(i)`` for this peer, bound to the Redis at ``url``."""
        os.environ["BENCH_REDIS_URL"] = url
        module = importlib.import_module(self.module)
        task = module.bench_noop
        return task.send if self.name == "dramatiq" else task.delay  # type: ignore[no-any-return]


PEERS = {
    "dramatiq": Peer(
        "dramatiq",
        "benchmarks.peer_dramatiq",
        DB_DRAMATIQ,
        [
            *(sys.executable, "-m", "dramatiq", "benchmarks.peer_dramatiq"),
            *("--processes", "1", "--threads", "8"),
        ],
        "1 process x 8 threads",
    ),
    "celery": Peer(
        "celery",
        "benchmarks.peer_celery",
        DB_CELERY,
        [
            *(sys.executable, "-m", "celery", "-A", "benchmarks.peer_celery", "worker"),
            *("--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        "prefork, concurrency 2 (1 parent + 2 children)",
    ),
}


def run_peer(name: str, opts: Options, services: Services) -> list[Result]:
    """The drain and latency cases for one peer."""
    peer = PEERS[name]
    url = services.redis_url(peer.db)
    send = peer.sender(url)
    results = []
    for case, fn in (("drain", _drain), ("latency", _latency)):
        try:
            results.append(fn(peer, opts, services, send))
        except CaseError as exc:
            results.append(Result(f"{name}_{case}", False, {}, str(exc)))
        services.redis_url(peer.db)  # empty the queue for the next case
    return results


def _env(url: str, out: str) -> dict[str, str]:
    return {"BENCH_REDIS_URL": url, OUT_ENV: out}


def _drain(peer: Peer, opts: Options, services: Services, send: Send) -> Result:
    n = opts.peer_n
    url = services.redis_url(peer.db)
    with Scratch() as scratch:
        out = scratch.path(peer.name)
        send(-1)  # the first send opens connections: not timed
        started = time.perf_counter()
        for i in range(n):
            send(i)
        enqueue_rate = n / (time.perf_counter() - started)
        worker = scratch.worker(peer.worker, _env(url, str(out)), f"{peer.name}-drain")
        wait_for(
            lambda: count_lines(out) >= n + 1 or worker.poll() is not None,
            60 + n / 100,
            f"{peer.name} draining {n} jobs",
            interval=0.05,
        )
        if worker.poll() is not None:
            raise CaseError(f"the {peer.name} worker exited with code {worker.returncode}")
        time.sleep(0.2)  # anything that would run twice has had a chance to
        starts = sorted(t for i, t in read_lines(out) if i >= 0)
        checks = exactly_once(out, n)
    figures: dict[str, Any] = {
        "n": n,
        "worker": peer.how,
        "version": peer.version(),
        "jobs_per_s": round((len(starts) - 1) / (starts[-1] - starts[0])),
        "enqueue_per_s": round(enqueue_rate),
        **checks,
    }
    return Result(f"{peer.name}_drain", bool(checks["exactly_once"]), figures)


def _latency(peer: Peer, opts: Options, services: Services, send: Send) -> Result:
    n, rate = opts.latency_n, opts.latency_rate
    url = services.redis_url(peer.db)
    sent = [0.0] * n
    with Scratch() as scratch:
        out = scratch.path(peer.name)
        worker = scratch.worker(peer.worker, _env(url, str(out)), f"{peer.name}-latency")
        send(-1)
        wait_for(
            lambda: count_lines(out) >= 1 or worker.poll() is not None,
            60,
            f"the {peer.name} worker starting",
            interval=0.05,
        )
        time.sleep(0.5)
        begin = time.perf_counter()
        for i in range(n):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[i] = time.time()
            send(i)
        achieved = n / (time.perf_counter() - begin)
        wait_for(
            lambda: count_lines(out) >= n + 1 or worker.poll() is not None,
            30,
            f"{peer.name} running {n} paced jobs",
            interval=0.05,
        )
        if worker.poll() is not None:
            raise CaseError(f"the {peer.name} worker exited with code {worker.returncode}")
        started = {i: t for i, t in read_lines(out) if i >= 0}
        checks = exactly_once(out, n)
    lat = [started[i] - sent[i] for i in range(n) if i in started]
    figures: dict[str, Any] = {
        "n": n,
        "worker": peer.how,
        "rate_per_s": round(achieved, 1),
        **summary_ms("start", lat),
        **checks,
    }
    return Result(f"{peer.name}_latency", bool(checks["exactly_once"]), figures)
