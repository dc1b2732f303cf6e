"""Jobs that crash or hold their node, for the write-ahead attempt tests (issue 10)."""

import os
import time

from reactor import job


def _attempt(args):
    return args.get("job_itself", {}).get("attempt")


@job("crash_node")
def crash_node(args):
    """A poison job: notes ``crash <attempt> <pid>`` in ``path``, then kills its node process."""
    with open(args["path"], "a") as f:
        f.write(f"crash {_attempt(args)} {os.getpid()}\n")
    os._exit(1)


@job("note_attempt")
def note_attempt(args):
    """Notes ``start <attempt> <pid>`` in ``path``, then holds the node ``seconds`` (on attempts
    before ``until`` only)."""
    with open(args["path"], "a") as f:
        f.write(f"start {_attempt(args)} {os.getpid()}\n")
    if _attempt(args) < args.get("until", 1_000):
        time.sleep(args.get("seconds", 0.0))
    args["attempt_seen"] = _attempt(args)
