"""The job the API enqueues, an ``async def``: a node runs many of these at once on its loop.

It imports the project's own code (greetings.py): `reactor node` puts its working directory on
sys.path, so run it from the project's directory (or give --path DIR).
"""

import asyncio
import os

from greetings import greeting

from reactor import job


def _append(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


@job("greet")
async def greet(args):
    await asyncio.sleep(0.001)  # stands for awaiting a database or another service
    args["greeting"] = greeting(args["name"])
    if "EXAMPLE_JOB_LOG" in os.environ:  # the tests read it to check that every job ran
        await asyncio.to_thread(_append, os.environ["EXAMPLE_JOB_LOG"], args["name"])
