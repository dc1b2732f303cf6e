"""The peers' job bodies, the same as reactor's benchmark jobs: :func:`append_line` appends
``"<i> <start time>"`` to the file named by ``REACTOR_BENCH_OUT`` with one ``write`` to an
O_APPEND descriptor (safe across threads and forked processes); :func:`burn` is the CPU-bound
case's work."""

from __future__ import annotations

import os
import time

_fd: int | None = None


def append_line(i: int) -> None:
    """Record that job ``i`` started now."""
    global _fd
    started = time.time()
    if _fd is None:
        path = os.environ.get("REACTOR_BENCH_OUT")
        if not path:
            return
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, b"%d %.6f\n" % (i, started))


def burn(loops: int) -> int:
    """``loops`` rounds of pure Python: the CPU-bound job's work (the twin of reactor's
    ``bench_cpu`` in benchmarks/jobs/bench_jobs.py)."""
    total = 0
    for k in range(loops):
        total += k * k
    return total
