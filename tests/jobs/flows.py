"""Jobs the workflow tests run on real node processes. Evidence goes to files named in args."""

import asyncio
import os

from reactor import job


def _note(args, line):
    if "path" in args:
        with open(args["path"], "a") as f:
            f.write(f"{line}\n")


@job("flow_add")
def flow_add(args):
    args["n"] = args.get("n", 0) + args.get("inc", 1)
    args["pid"] = os.getpid()
    _note(args, f"add {args.get('tag', '')}")


@job("flow_total")
def flow_total(args):
    args["total"] = sum(result["n"] for result in args["results"])
    _note(args, "total")


@job("flow_fail", max_attempt=1)
def flow_fail(args):
    _note(args, f"fail {args.get('tag', '')}")
    raise ValueError(f"step failed at n={args.get('n')}")


@job("flow_wait")
async def flow_wait(args):
    _note(args, "wait started")
    await asyncio.sleep(args.get("seconds", 1.0))
    _note(args, "wait ended")
