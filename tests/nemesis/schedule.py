"""The fault schedule: drawn up front from ``random.Random(seed)``, so a seed replays it.

A schedule is a list of :class:`Fault` (when, what, to whom, for how long). It depends only on the
seed, the length of the run and the cluster's shape, never on what the processes do, so
``--seed S`` replays the same faults at the same offsets. A target is given one fault at a time,
and at most all nodes but one are faulted at once (so work always has somewhere to go).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: kind -> (weight, (shortest, longest) duration in seconds). A duration of 0 is instantaneous.
KINDS: dict[str, tuple[int, tuple[float, float]]] = {
    "node_kill": (3, (0.5, 5.0)),  # SIGKILL, restarted after the duration
    "node_stop": (2, (1.0, 10.0)),  # SIGSTOP, SIGCONT after (past node_lost_after at times)
    "node_term": (2, (1.0, 5.0)),  # SIGTERM (graceful stop), restarted after
    "app_kill": (2, (0.5, 5.0)),
    "app_stop": (1, (1.0, 6.0)),
    "app_term": (1, (1.0, 4.0)),  # the interpreter's normal exit: drain, bye
    "cut": (3, (0.0, 0.0)),  # every connection through an application's proxy aborted
    "partition": (1, (1.0, 6.0)),  # an application's proxy delivers nothing, then heals
    "redis_restart": (1, (0.5, 3.0)),  # SIGKILL or SIGTERM, started again (AOF fsync always)
}
#: Seconds between the starts of two faults.
GAP = (1.0, 5.0)
#: A target rests this long after its fault ends before it is faulted again.
REST = 0.5


@dataclass(frozen=True)
class Fault:
    """One fault: ``kind`` on ``target`` at ``at`` seconds into the run, for ``duration``."""

    at: float
    kind: str
    target: str
    duration: float
    variant: str = ""  # cut: "half_open" or ""; redis_restart: "kill" or "term"

    @property
    def ends(self) -> float:
        return self.at + self.duration

    def describe(self) -> str:
        extra = f" {self.variant}" if self.variant else ""
        length = f" for {self.duration:.1f}s" if self.duration else ""
        return f"{self.kind}{extra} {self.target}{length}"


def _targets(kind: str, apps: list[str], nodes: list[str]) -> list[str]:
    if kind.startswith("node_"):
        return nodes
    if kind == "redis_restart":
        return ["redis"]
    return apps


def _variant(kind: str, rng: random.Random) -> str:
    if kind == "cut":
        return "half_open" if rng.random() < 0.3 else ""
    if kind == "redis_restart":
        return rng.choice(["kill", "term"])
    return ""


class Schedule:
    """The faults of one run.

    Args:
        seed: the seed of ``random.Random``.
        seconds: how long faults are drawn for.
        apps: the applications' names; nodes: the nodes' names.
        kinds: the kinds of fault drawn (all of :data:`KINDS` when None).
    """

    def __init__(
        self,
        seed: int,
        seconds: float,
        apps: list[str],
        nodes: list[str],
        kinds: list[str] | None = None,
    ) -> None:
        unknown = set(kinds or ()) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; valid: {sorted(KINDS)}")
        self.seed = seed
        self.kinds = list(kinds or KINDS)
        self.faults = self._draw(random.Random(seed), seconds, apps, nodes, self.kinds)

    @staticmethod
    def _draw(
        rng: random.Random, seconds: float, apps: list[str], nodes: list[str], kinds: list[str]
    ) -> list[Fault]:
        weights = [KINDS[k][0] for k in kinds]
        busy: dict[str, float] = {}  # target -> when it may be faulted again
        faults: list[Fault] = []
        t = rng.uniform(2.0, 4.0)
        while t < seconds:
            kind = rng.choices(kinds, weights)[0]
            low, high = KINDS[kind][1]
            duration = round(rng.uniform(low, high), 2)
            variant = _variant(kind, rng)
            free = [x for x in _targets(kind, apps, nodes) if busy.get(x, 0.0) <= t]
            nodes_busy = sum(1 for n in nodes if busy.get(n, 0.0) > t)
            if kind.startswith("node_") and nodes_busy >= len(nodes) - 1:
                free = []
            if free:
                target = rng.choice(free)
                faults.append(Fault(round(t, 2), kind, target, duration, variant))
                busy[target] = t + duration + REST
            t += rng.uniform(*GAP)
        return faults

    def lines(self) -> list[str]:
        """The schedule, one fault a line, as printed before the run."""
        return [f"  {f.at:7.2f}s  {f.describe()}" for f in self.faults]
