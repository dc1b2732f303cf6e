"""Jobs the integration tests run on real node processes. Evidence goes to files named in args."""

import asyncio
import os
import threading
import time

from reactor import CancelJob, job, job_callback, job_errback


def _note(args, line):
    with open(args["path"], "a") as f:
        f.write(f"{line}\n")


@job("record")
def record(args):
    args["pid"] = os.getpid()
    args["started"] = time.time()
    if "path" in args:
        _note(args, f"{args.get('tag', '')} {os.getpid()}")
    args["result"] = "ok"


@job("chain")
def chain(args):
    args["order"] = ["body"]


@job_callback("chain", "first")
def chain_first(args):
    args["order"].append("first")


@job_callback("chain", "second")
def chain_second(args):
    args["order"].append("second")
    args["same_dict"] = args["order"][0] == "body"


@job("failing")
def failing(args):
    args["added_by_failed_attempt"] = True
    _note(args, "attempt")
    return undefined_name  # noqa: F821 - raises NameError on purpose


@job_errback("failing", "note")
def failing_errback(args):
    _note(
        args,
        f"errback saw_addition={'added_by_failed_attempt' in args} "
        f"error={type(args['error']).__name__}",
    )
    args["errback_was_here"] = True


@job("async_sleep")
async def async_sleep(args):
    args["began"] = time.time()
    if "path" in args:
        _note(args, f"start {os.getpid()}")
    await asyncio.sleep(args.get("seconds", 1.0))
    args["pid"] = os.getpid()
    args["finished"] = time.time()


@job("periodic")
def periodic(args):
    args["runs"] = args.get("runs", 0) + 1
    _note(args, f"run {time.time()}")
    if args.get("cancel_at") and args["runs"] >= args["cancel_at"]:
        raise CancelJob


@job("fail_then_cancel")
def fail_then_cancel(args):
    _note(args, "attempt")
    raise NameError("name 'boom' is not defined")


@job_errback("fail_then_cancel", "stop")
def fail_then_cancel_errback(args):
    raise CancelJob


@job("where")
def where(args):
    args["main_thread"] = threading.current_thread() is threading.main_thread()
    args["thread"] = threading.current_thread().name


@job_callback("where", "after")
def where_after(args):
    args["callback_main_thread"] = threading.current_thread() is threading.main_thread()


@job("block")
def block(args):
    time.sleep(args.get("seconds", 1.0))  # a blocking def job: holds the node's loop
    args["blocked"] = True


@job("sleep_def")
def sleep_def(args):
    """A blocking ``def`` job for the fault tests: holds the loop ``seconds``, then notes
    ``<tag> <pid> <started>`` in ``path``, so a test can count each job's runs and their places."""
    args["started"] = time.time()
    args["pid"] = os.getpid()
    time.sleep(args.get("seconds", 0.0))
    if "path" in args:
        _note(args, f"{args.get('tag', '')} {os.getpid()} {args['started']:.6f}")
