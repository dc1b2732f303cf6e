"""The job the views enqueue. It uses the project's Django models, so it sets Django up first;
`reactor node` run from the project's directory finds the project's packages (or give --path)."""

import os
from pathlib import Path

import django

from reactor import job

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django.setup()

from shop.models import Customer  # noqa: E402  (models import only after django.setup())


@job("greet")
def greet(args):
    customer = Customer(name=args["name"])  # not saved: this job needs no database
    args["greeting"] = customer.greeting()
    note_run(args["name"])


def note_run(name):
    """Append ``name`` to the file named by EXAMPLE_JOB_LOG (the tests check every job ran)."""
    ledger = os.environ.get("EXAMPLE_JOB_LOG")
    if ledger:
        with Path(ledger).open("a") as f:
            print(name, file=f)
