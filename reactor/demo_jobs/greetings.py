"""A job with two callbacks sharing one args dict, as in JobReactor's README."""

from reactor import job, job_callback


@job("hello")
def hello(args):
    args["greeting"] = f"Hello, {args.get('name', 'world')}!"


@job_callback("hello", "shout")
def shout(args):
    args["shouted"] = args["greeting"].upper()


@job_callback("hello", "sign")
def sign(args):
    args["steps"] = ["hello", "shout", "sign"]
