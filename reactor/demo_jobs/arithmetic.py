"""A job that fails on bad input, with an errback that sees the error."""

from reactor import job, job_errback


@job("divide")
def divide(args):
    args["result"] = args["a"] / args["b"]


@job_errback("divide", "explain")
def explain(args):
    args["explained"] = f"could not divide {args['a']} by {args['b']}: {args['error']}"
