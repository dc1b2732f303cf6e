"""Benchmark jobs: each appends one ``"<i> <start time>"`` line to the file named by
``REACTOR_BENCH_OUT`` (one ``write`` to an O_APPEND descriptor), so the benchmark can check that
every job ran exactly once and when it started."""

from __future__ import annotations

import os
import time
from typing import Any

from reactor import job

_fd: int | None = None


def _append(i: int, started: float) -> None:
    global _fd
    if _fd is None:
        path = os.environ.get("REACTOR_BENCH_OUT")
        if not path:
            return
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, b"%d %.6f\n" % (i, started))


@job("bench_noop")
def bench_noop(args: dict[str, Any]) -> None:
    """The drain job: record that it ran."""
    _append(args["i"], time.time())


@job("bench_timed")
def bench_timed(args: dict[str, Any]) -> None:
    """The latency and timer job: also hand its start time back in the feedback args."""
    started = args["started"] = time.time()
    _append(args["i"], started)


@job("bench_cpu")
def bench_cpu(args: dict[str, Any]) -> None:
    """The CPU-bound job: ``loops`` rounds of pure Python (about 2 ms; see
    :func:`benchmarks.cpu_bound.burn`, its twin), then record that it ran."""
    started = time.time()
    total = 0
    for k in range(args["loops"]):
        total += k * k
    _append(args["i"], started)
