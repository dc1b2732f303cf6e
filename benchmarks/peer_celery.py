"""Celery's side of the comparison: a Redis broker, no result backend, the cheap job body.

Imported by the worker (``celery -A benchmarks.peer_celery worker``) and by the benchmark
process, both with ``BENCH_REDIS_URL`` naming the throwaway Redis database.
"""

from __future__ import annotations

import os

from celery import Celery

from benchmarks.appendline import append_line, burn

if "BENCH_REDIS_URL" not in os.environ:
    raise RuntimeError("set BENCH_REDIS_URL to the benchmark's throwaway Redis")

app = Celery("reactor_bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench_noop")
def bench_noop(i: int) -> None:
    """Append this job's line."""
    append_line(i)


@app.task(name="bench_cpu")
def bench_cpu(i: int, loops: int) -> None:
    """Append this job's line, then burn ``loops`` rounds of pure Python."""
    append_line(i)
    burn(loops)
