"""A stopping distributor's goodbye: every node hears that its session is over.

The jobs a node stored for a distributor may start only while that distributor's lease holds
(DESIGN §3: so a copy it may have reassigned never runs twice). An application that exits after
its drain leaves them with nobody to renew it: without a word, a job stored just before the exit
would wait forever for a sync that never comes. So a stopping distributor says Bye to each node,
which takes those jobs as its own (they run, and their outcomes go to its result store if it
has one) and answers with a Bye of its own. The stop waits for the answers, up to
:data:`FAREWELL_TIMEOUT`, so the byes have left before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from reactor.core.distributor import DistributorCore

#: Seconds a stopping distributor waits for its nodes to answer its bye.
FAREWELL_TIMEOUT = 1.0


class Leaving(Protocol):
    """What saying goodbye needs from a distributor."""

    on_progress: Callable[[], None] | None


async def say_goodbye(
    distributor: Leaving, core: DistributorCore | None, timeout: float = FAREWELL_TIMEOUT
) -> int:
    """Send every live node a bye and wait until each answered, or ``timeout`` seconds passed.

    Returns:
        How many nodes did not answer in time (they hear of it when they next say hello, as a
        restarted distributor's new session).
    """
    if core is None or not core.bye():
        return 0
    answered = asyncio.Event()

    def check() -> None:
        if not core.saying_bye:
            answered.set()

    distributor.on_progress = check
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), timeout)
    finally:
        distributor.on_progress = None
    return len(core.saying_bye)
