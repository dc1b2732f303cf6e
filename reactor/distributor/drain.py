"""Draining a distributor: wait until a node has stored every job it holds, and say which not.

A job lives only in the distributor's memory until a node stores it (DESIGN §3 "Applications
that stop"), so a stopping application first waits, up to ``drain_timeout``, for that to happen;
what is still unstored then is lost, and the report says how many and which job names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol

from reactor.core.routing import JobState

log = logging.getLogger("reactor.distributor")

#: How many distinct job names a loss report lists before it says "and N more names".
NAMES_SHOWN = 20


class Drainable(Protocol):
    """What draining needs from a distributor."""

    on_progress: Callable[[], None] | None

    def unstored_count(self) -> int:
        """Jobs held that no node has stored yet."""


async def wait_stored(distributor: Drainable, timeout: float | None) -> int:
    """Wait until ``distributor`` holds no unstored job, or ``timeout`` seconds passed.

    Wakes on the distributor's progress (a node's acknowledgements, cancels), never by polling.
    Jobs enqueued meanwhile are waited for too.

    Returns:
        How many jobs are still not stored by a node (0: drained).
    """
    count = distributor.unstored_count()
    if count == 0 or (timeout is not None and timeout <= 0):
        return count
    progressed = asyncio.Event()

    def check() -> None:
        if distributor.unstored_count() == 0:
            progressed.set()

    deadline = None if timeout is None else time.monotonic() + timeout
    distributor.on_progress = check
    try:
        while count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progressed.wait(), left)
            progressed.clear()
            count = distributor.unstored_count()
    finally:
        distributor.on_progress = None
    return count


def summary(jobs: Iterable[JobState]) -> str:
    """``"noop x976, mail x3"``: job names with how many of each, most frequent first."""
    counts = Counter(job.name for job in jobs)
    parts = [f"{name} x{n}" for name, n in counts.most_common(NAMES_SHOWN)]
    if len(counts) > NAMES_SHOWN:
        parts.append(f"and {len(counts) - NAMES_SHOWN} more names")
    return ", ".join(parts)


def report_lost(address: str, jobs: list[JobState], waited: float, *, outbox: str | None) -> None:
    """Log the jobs a stopping distributor holds that no node stored: at ERROR, as lost, or,
    with an outbox (``outbox`` names its group), at WARNING, as left for the group to deliver."""
    if not jobs:
        return
    if outbox is not None:
        log.warning(
            "distributor %s stopped holding %d jobs no node had stored after waiting %.1fs "
            "(drain_timeout): %s. They stay in the outbox of group %r, whose next member to "
            "renew its lease delivers them",
            address,
            len(jobs),
            waited,
            summary(jobs),
            outbox,
        )
        return
    log.error(
        "distributor %s stopped holding %d jobs no node had stored after waiting %.1fs "
        "(drain_timeout); they are lost: %s. Keep a node reachable while the application exits, "
        "raise config['drain_timeout'], or enqueue through an outbox= (durable enqueue)",
        address,
        len(jobs),
        waited,
        summary(jobs),
    )
