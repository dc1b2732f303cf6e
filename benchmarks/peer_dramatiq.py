"""Dramatiq's side of the comparison: a Redis broker and the cheap job body.

Imported by the worker (``dramatiq benchmarks.peer_dramatiq``) and by the benchmark process,
both with ``BENCH_REDIS_URL`` naming the throwaway Redis database.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.appendline import append_line, burn

if "BENCH_REDIS_URL" not in os.environ:
    raise RuntimeError("set BENCH_REDIS_URL to the benchmark's throwaway Redis")

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def bench_noop(i: int) -> None:
    """Append this job's line."""
    append_line(i)


@dramatiq.actor(max_retries=0)
def bench_cpu(i: int, loops: int) -> None:
    """Append this job's line, then burn ``loops`` rounds of pure Python."""
    append_line(i)
    burn(loops)
