"""The nemesis's jobs: each run notes ``start``, then ``ok`` or ``fail``, in its node's run ledger.

The node runs with ``merge_job_itself_to_args`` (the job's id, attempt and node come from
``args["job_itself"]``) and ``NEMESIS_RUNS`` naming the ledger file. A line is
``<event> <job id> <node> <attempt> <pid> <time>``; lines are appended and flushed, so a SIGKILL
loses at most the line being written (the checker skips a torn line).
"""

import asyncio
import os
import time

from reactor import job


def _note(args, event):
    me = args.get("job_itself") or {}
    line = (
        f"{event} {me.get('id', '?')} {me.get('node', '?')} {me.get('attempt', 0)} "
        f"{os.getpid()} {time.time():.6f}\n"
    )
    path = os.environ.get("NEMESIS_RUNS")
    if path:
        with open(path, "a") as f:
            f.write(line)
            f.flush()


async def _run(args, fail):
    _note(args, "start")
    await asyncio.sleep(args.get("seconds", 0.05))
    if fail:
        _note(args, "fail")
        raise RuntimeError("nemesis: this attempt fails on purpose")
    _note(args, "ok")
    args.pop("job_itself", None)
    args["done"] = True


@job("nemesis_ok")
async def nemesis_ok(args):
    await _run(args, fail=False)


@job("nemesis_flaky")
async def nemesis_flaky(args):
    attempt = (args.get("job_itself") or {}).get("attempt", 1)
    await _run(args, fail=attempt < args.get("succeed_at", 2))


@job("nemesis_fail")
async def nemesis_fail(args):
    await _run(args, fail=True)
