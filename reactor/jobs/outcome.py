"""How one attempt of a job's chain ended: plain data for the runner and the sans-I/O core."""

from __future__ import annotations

from enum import Enum
from typing import Any


class Outcome(Enum):
    """How an attempt ended."""

    DONE = "done"  # every step ran
    CANCELLED = "cancelled"  # CancelJob in the body or a callback: success feedback, no more runs
    FAILED = "failed"  # an exception; errbacks ran; may be retried
    FAILED_CANCELLED = "failed_cancelled"  # CancelJob in an errback: error feedback, no retries


class Attempt:
    """The result of one attempt: the outcome, the args to keep, and the error if any."""

    __slots__ = ("args", "error", "outcome")

    def __init__(self, outcome: Outcome, args: dict[str, Any], error: BaseException | None) -> None:
        self.outcome = outcome
        self.args = args
        self.error = error
