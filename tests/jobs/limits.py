"""Jobs for the time-limit, retry-policy and cron tests (issue 13). Evidence goes to ``path``."""

import asyncio
import time

from reactor import Backoff, job, job_errback


def _note(args, line):
    with open(args["path"], "a") as f:
        f.write(f"{line}\n")


@job("limit_async")
async def limit_async(args):
    _note(args, f"start {time.time():.6f}")
    await asyncio.sleep(args.get("seconds", 30.0))
    _note(args, "finished")


@job_errback("limit_async", "note")
def limit_async_errback(args):
    _note(args, f"errback {type(args['error']).__name__} {time.time():.6f}")


@job("limit_defer")
def limit_defer(args):
    """Run with ``defer=True``: blocks a worker thread, then notes that it finished."""
    _note(args, f"start {time.time():.6f}")
    time.sleep(args.get("seconds", 30.0))
    args["late_change"] = True  # must not reach any feedback: the attempt was abandoned
    _note(args, "finished")


@job("limit_def")
def limit_def(args):
    """A plain ``def`` job on the node's loop: nothing can interrupt it."""
    time.sleep(args.get("seconds", 1.0))
    _note(args, f"returned {time.time():.6f}")


@job(
    "fail_exponential",
    max_attempt=4,
    backoff=Backoff.exponential(base=0.2, factor=2.0, max_delay=5.0, jitter=0.1),
)
def fail_exponential(args):
    _note(args, f"attempt {time.time():.6f}")
    raise RuntimeError("always fails")


@job("fail_twice", max_attempt=2, backoff=Backoff.linear(0))
def fail_twice(args):
    _note(args, "attempt")
    raise RuntimeError("always fails")


@job("give_up", max_attempt=5, backoff=Backoff.linear(0), give_up_on=ValueError)
def give_up(args):
    _note(args, "attempt")
    raise ValueError(args.get("why", "bad input: retrying cannot help"))


@job("cron_tick")
def cron_tick(args):
    _note(args, f"tick {time.time():.6f}")
