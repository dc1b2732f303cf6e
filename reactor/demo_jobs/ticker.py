"""A periodic job that counts its runs and cancels itself on the third."""

from reactor import CancelJob, job


@job("tick")
def tick(args):
    args["count"] = args.get("count", 0) + 1
    if args["count"] >= args.get("stop_at", 3):
        raise CancelJob
