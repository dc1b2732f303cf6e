"""The job the web app enqueues; it imports the project's own code (greetings.py), which the node
finds because `reactor node` runs from the project's directory (or give --path DIR)."""

import os

from greetings import greeting

from reactor import job


@job("greet")
def greet(args):
    args["greeting"] = greeting(args["name"])
    ledger = os.environ.get("EXAMPLE_JOB_LOG")  # the tests check that every job ran
    if ledger:
        with open(ledger, "a") as f:
            f.write(args["name"] + "\n")
