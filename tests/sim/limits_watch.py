"""The flow-control invariants of the simulation (issue 20), watched as bodies start and end.

Every simulated node shares one :class:`~reactor.core.gate.MemoryGate` (the simulation's limits
store), so "never more than N running at once" holds across the whole simulated cluster: each
body start of a job with a ``concurrency_key`` counts the bodies of that key under way in live
processes, and one over the limit is a violation. A process frozen longer than its lease may
find, when it thaws, that its slots were given away (any lease-based limit does: a paused holder
cannot tell), so its bodies are left out of the count from the freeze on, and so are the bodies
it starts within a lease after it thaws (a durable node's job granted before the freeze starts
its body once its attempt is written, after the thaw). After the run every slot must be free
again: held by nobody, or lapsed ("no slot leaked after a crash").
"""

from __future__ import annotations

import random
from typing import Any

from reactor.core.gate import MemoryGate
from reactor.jobs.record import JobRecord

#: The concurrency keys of the simulated workload and their limits.
KEYS = {"k1": 1, "k2": 2}


def draw_flow(limits: random.Random) -> dict[str, Any] | None:
    """A job's flow-control options, from a stream of their own (seeds keep their jobs)."""
    if limits.random() >= 0.4:
        return None
    key = limits.choice(sorted(KEYS))
    flow: dict[str, Any] = {"concurrency_key": key, "concurrency_limit": KEYS[key]}
    if limits.random() < 0.5:
        flow["fair_key"] = limits.choice(["t1", "t2"])
    return flow


class LimitWatch:
    """Bodies under way per concurrency key, and the violations seen."""

    def __init__(self, gate: MemoryGate) -> None:
        self.gate = gate
        self.thawed: dict[str, float] = {}  # session -> when its latest freeze ends
        self.live: dict[str, set[tuple[str, str]]] = {}  # key -> (session, job id)
        self.exempt: set[tuple[str, str]] = set()
        self.violations: list[str] = []

    def started(self, session: str, job: JobRecord, now: float) -> None:
        limits = job.limits
        if limits is None or limits[0] is None:
            return
        key, limit = limits[0], limits[1]
        live = self.live.setdefault(key, set())
        live.add((session, job.id))
        if now < self.thawed.get(session, -1.0) + self.gate.lease:
            self.exempt.add((session, job.id))  # granted before a freeze that outlived it
        counted = [b for b in live if b not in self.exempt]
        if len(counted) > limit:
            self.violations.append(
                f"t={now:.3f}: {len(counted)} bodies of {key} at once (limit {limit}): "
                f"{sorted(counted)}"
            )

    def ended(self, session: str, job: JobRecord) -> None:
        if job.limits is not None and job.limits[0] is not None:
            self.live.get(job.limits[0], set()).discard((session, job.id))

    def gone(self, session: str) -> None:
        """A process died: its bodies ended with it (its slots lapse with their leases)."""
        for live in self.live.values():
            for body in [b for b in live if b[0] == session]:
                live.discard(body)

    def frozen(self, session: str, until: float) -> None:
        """A process froze until ``until``: its bodies may outlive their leases."""
        self.thawed[session] = until
        for live in self.live.values():
            self.exempt.update(b for b in live if b[0] == session)

    def leaked(self, now: float) -> list[str]:
        """Slots still held at the end of the run, when nothing runs any more."""
        return [
            f"slot of {key} still held at the end: {sorted(held)}"
            for key, held in self.gate.slots.items()
            if any(until > now for until in held.values())
        ]
