"""Jobs for the operations tests (issue 12): one that fails until a file exists."""

import os

from reactor import job


@job("gated")
def gated(args):
    """Fails while ``args["gate"]`` names no file; notes each attempt in ``args["path"]``."""
    with open(args["path"], "a") as f:
        f.write(f"attempt {os.getpid()}\n")
    if not os.path.exists(args["gate"]):
        raise RuntimeError(f"gate {args['gate']} is closed")
    args["passed"] = True
