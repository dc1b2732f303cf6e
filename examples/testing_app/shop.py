"""A tiny shop: the application code under test. It only enqueues, through the JR facade."""

from __future__ import annotations

import reactor as JR

RECEIPT_DELAY = 60.0  # seconds after the charge


def place_order(order_id: int, amount_cents: int, email: str) -> JR.JobHandle:
    """Charge an order (once, however often the customer clicks) and mail a receipt later."""
    handle = JR.enqueue(
        "charge",
        {"order_id": order_id, "amount_cents": amount_cents},
        unique_key=f"charge:{order_id}",  # a double click inside 10 minutes charges once
        unique_for=600.0,
        priority=10,  # payments before newsletters
    )
    JR.enqueue("send_receipt", {"order_id": order_id, "email": email}, after=RECEIPT_DELAY)
    return handle
