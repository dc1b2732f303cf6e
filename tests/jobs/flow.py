"""Jobs for the flow-control tests (issue 20): each notes when its attempt starts (and ends) in
``path``, so the test measures the limits from the starts and ends themselves."""

import asyncio
import time

from reactor import job


def _note(args, line):
    with open(args["path"], "a") as f:
        f.write(f"{line}\n")


@job("flow_slot", concurrency=2)
async def flow_slot(args):
    _note(args, f"start {args['tag']} {time.time():.6f}")
    await asyncio.sleep(args.get("seconds", 0.05))
    _note(args, f"end {args['tag']} {time.time():.6f}")


@job("flow_rate", rate_limit="20/s")
def flow_rate(args):
    _note(args, f"start {args['tag']} {time.time():.6f}")


@job("flow_hold")
async def flow_hold(args):
    """Holds its slots (``concurrency_key=`` at enqueue) for ``seconds``."""
    _note(args, f"start {args['tag']} {time.time():.6f}")
    await asyncio.sleep(args.get("seconds", 60.0))


@job("flow_fair")
def flow_fair(args):
    """A short job on the node's loop (a few ms), so a backlog takes a while to run."""
    _note(args, f"start {args['tag']} {time.time():.6f}")
    time.sleep(args.get("seconds", 0.002))
