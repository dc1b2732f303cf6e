"""MemoryGate: concurrency slots and rate windows held in memory (issue 20).

A node without a ``limits_store`` uses one (its limits hold within that node process); the
simulation shares one among all its nodes, on its fake clock, so its invariants see a whole
cluster. It keeps the same rules as the Redis gate (:mod:`reactor.storage.limits`): a slot is a
lease that lapses unless renewed; a rate limit is a sliding log of start times.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from reactor.core.limits import Denied
from reactor.jobs.limits import SLOT, Claim

if TYPE_CHECKING:
    from reactor.core.limits import Limits

#: A rate window is this much longer than its nominal length: a start is timed where its
#: attempt begins, a hair after the grant, so this keeps "at most N starts in any window"
#: true of the starts themselves, at a cost of under 3 % of the throughput.
RATE_MARGIN = 0.03


def window(per: int) -> float:
    """The seconds a rate limit's sliding window spans (see :data:`RATE_MARGIN`)."""
    return per * (1.0 + RATE_MARGIN)


class MemoryGate:
    """Slots and rate logs in memory (see the module docstring).

    Args:
        lease: seconds a slot stays held without a renewal.
        poll: the longest wait a refused slot claim is told (a release elsewhere in the same
            gate is seen within it; one in the same node wakes its waiter at once).
    """

    def __init__(self, *, lease: float, poll: float = 1.0) -> None:
        self.lease = lease
        self.poll = poll
        self.slots: dict[str, dict[str, float]] = {}  # key -> holder -> lease expiry
        self.starts: dict[str, deque[float]] = {}  # key -> start times within the window

    def attach(self, limits: Limits) -> None:
        """Nothing to do: a memory gate answers at once."""

    def acquire(self, holder: str, claims: list[Claim], now: float) -> Denied | None:
        """Grant every claim to ``holder`` (None) or refuse (the first full claim)."""
        for claim in claims:
            denied = self._check(holder, claim, now)
            if denied is not None:
                return denied
        for claim in claims:
            if claim.kind == SLOT:
                self.slots.setdefault(claim.key, {})[holder] = now + self.lease
            else:
                self.starts.setdefault(claim.key, deque()).append(now)
        return None

    def _check(self, holder: str, claim: Claim, now: float) -> Denied | None:
        if claim.kind == SLOT:
            held = self.slots.get(claim.key)
            if not held:
                return None
            for name in [h for h, until in held.items() if until <= now]:
                del held[name]  # a lapsed lease: its holder died
            if holder in held or len(held) < claim.limit:
                return None
            return Denied(claim.key, min(self.poll, min(held.values()) - now))
        log = self.starts.get(claim.key)
        if not log:
            return None
        span = window(claim.per)
        while log and log[0] <= now - span:
            log.popleft()
        if len(log) < claim.limit:
            return None
        return Denied(claim.key, log[-claim.limit] + span - now)

    def release(self, holder: str, claims: list[Claim]) -> None:
        """Free ``holder``'s slots."""
        for claim in claims:
            held = self.slots.get(claim.key)
            if held is not None:
                held.pop(holder, None)
                if not held:
                    del self.slots[claim.key]

    def renew(self, holders: list[tuple[str, list[Claim]]], now: float) -> None:
        """Extend the leases of slots still held (a lapsed one is gone: never brought back)."""
        until = now + self.lease
        for holder, claims in holders:
            for claim in claims:
                held = self.slots.get(claim.key)
                if held is not None and holder in held:
                    held[holder] = until

    def running(self, key: str, now: float) -> int:
        """How many slots of ``key`` are held now (for tests and the simulation)."""
        return sum(1 for until in self.slots.get(key, {}).values() if until > now)
