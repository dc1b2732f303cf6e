"""The shop's job file: what its nodes run (`reactor node --jobs shop_jobs`)."""

from reactor import job, job_callback

CHARGED: list[int] = []  # what a real job would send to the payment provider


@job("charge", max_attempt=3)
def charge(args):
    if args["amount_cents"] <= 0:
        raise ValueError(f"order {args['order_id']}: nothing to charge")
    CHARGED.append(args["order_id"])
    args["charged"] = args["amount_cents"]


@job_callback("charge", "ledger")
def ledger(args):
    args["ledger"] = f"order {args['order_id']}: {args['charged']} cents"


@job("send_receipt")
def send_receipt(args):
    args["sent_to"] = args["email"]
