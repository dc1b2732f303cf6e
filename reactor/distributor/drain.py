"""Draining a distributor: wait until a node has stored every job it holds, and say which not.

A job lives only in the distributor's memory until a node stores it (DESIGN §3 "Applications
that stop"), so a stopping application first waits, up to ``drain_timeout``, for that to happen;
what is still unstored then is lost, and the report says how many, which job names, and how long
it waited. At the application's exit a first Ctrl-C says what the drain waits for, a second one
stops waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from reactor.core.jobstate import JobState

log = logging.getLogger("reactor.distributor")

#: How many distinct job names a loss report lists before it says "and N more names".
NAMES_SHOWN = 20


@dataclass
class DrainState:
    """A distributor's drains: how long they took, and whether someone stopped waiting."""

    #: Seconds spent draining so far (the loss report says how long it really waited).
    waited: float = 0.0
    #: When the drain under way gives up (``time.monotonic()``), or None.
    until: float | None = None
    #: Stop waiting now (a second Ctrl-C): the drain under way, and any later one, ends.
    cut: bool = False


class Drainable(Protocol):
    """What draining needs from a distributor."""

    on_progress: Callable[[], None] | None
    draining: DrainState

    def unstored_count(self) -> int:
        """Jobs held that no node has stored yet."""


async def wait_stored(distributor: Drainable, timeout: float | None) -> int:
    """Wait until ``distributor`` holds no unstored job, or ``timeout`` seconds passed.

    Wakes on the distributor's progress (a node's acknowledgements, cancels), never by polling.
    Jobs enqueued meanwhile are waited for too.

    Returns:
        How many jobs are still not stored by a node (0: drained).
    """
    state = distributor.draining
    count = distributor.unstored_count()
    if count == 0 or state.cut or (timeout is not None and timeout <= 0):
        return count
    progressed = asyncio.Event()

    def check() -> None:
        if state.cut or distributor.unstored_count() == 0:
            progressed.set()

    began = time.monotonic()
    deadline = state.until = None if timeout is None else began + timeout
    distributor.on_progress = check
    try:
        while count and not state.cut:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progressed.wait(), left)
            progressed.clear()
            count = distributor.unstored_count()
    finally:
        distributor.on_progress = None
        state.until = None
        state.waited += time.monotonic() - began
    return count


def cut_short(distributor: Drainable) -> None:
    """Stop waiting for the drain under way (and any later one); on the distributor's loop."""
    distributor.draining.cut = True
    if distributor.on_progress is not None:
        distributor.on_progress()


def wait_interruptibly(
    shutdown: concurrent.futures.Future[int],
    bound: float,
    distributor: Drainable | None,
    loop: asyncio.AbstractEventLoop,
) -> int:
    """Wait, in the application's main thread, for its distributor's shutdown (drain, stop).

    While it waits, SIGINT is handled here: a first Ctrl-C says what the drain waits for and
    goes on waiting; a second stops the drain (the jobs no node stored are reported lost) and
    waits only for the rest of the shutdown; a third raises ``KeyboardInterrupt``. Outside the
    main thread (where signals cannot be handled) it just waits.

    Returns:
        How many jobs no node had stored (the shutdown's result).
    """
    if distributor is None or threading.current_thread() is not threading.main_thread():
        return shutdown.result(bound)
    interrupts = 0

    def on_interrupt(signum: int, frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            until = distributor.draining.until
            left = "as long as it takes" if until is None else f"{until - time.monotonic():.1f}s"
            log.warning(
                "Ctrl-C: waiting (%s more, drain_timeout) for a node to store the %d job(s) "
                "this distributor holds, which are lost otherwise; Ctrl-C again to stop waiting",
                left,
                distributor.unstored_count(),
            )
        elif interrupts == 2:
            log.warning("second Ctrl-C: no longer waiting for a node to store the jobs")
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(cut_short, distributor)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    unstored = distributor.unstored_count()
    if unstored:  # an exit that waits says why (and a Ctrl-C from now on is the one above)
        log.info(
            "exiting: waiting (drain_timeout) for a node to store the %d job(s) this "
            "distributor holds; Ctrl-C twice to stop waiting",
            unstored,
        )
    try:
        return shutdown.result(bound)
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def summary(jobs: Iterable[JobState]) -> str:
    """``"noop x976, mail x3"``: job names with how many of each, most frequent first."""
    counts = Counter(job.name for job in jobs)
    parts = [f"{name} x{n}" for name, n in counts.most_common(NAMES_SHOWN)]
    if len(counts) > NAMES_SHOWN:
        parts.append(f"and {len(counts) - NAMES_SHOWN} more names")
    return ", ".join(parts)


def report_lost(
    address: str, jobs: list[JobState], waited: float, *, outbox: str | None, cut: bool = False
) -> None:
    """Log the jobs a stopping distributor holds that no node stored: at ERROR, as lost, or,
    with an outbox (``outbox`` names its group), at WARNING, as left for the group to deliver.
    ``waited``: the seconds the drains really waited; ``cut``: a Ctrl-C stopped them."""
    if not jobs:
        return
    why = "waiting stopped by Ctrl-C" if cut else "drain_timeout"
    if outbox is not None:
        log.warning(
            "distributor %s stopped holding %d jobs no node had stored after waiting %.1fs "
            "(%s): %s. They stay in the outbox of group %r, whose next member to "
            "renew its lease delivers them",
            address,
            len(jobs),
            waited,
            why,
            summary(jobs),
            outbox,
        )
        return
    log.error(
        "distributor %s stopped holding %d jobs no node had stored after waiting %.1fs "
        "(%s); they are lost: %s. Keep a node reachable while the application exits, "
        "raise config['drain_timeout'], or enqueue through an outbox= (durable enqueue)",
        address,
        len(jobs),
        waited,
        why,
        summary(jobs),
    )
