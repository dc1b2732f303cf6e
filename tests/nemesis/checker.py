"""The checker: holds the ledgers and the result store against the delivery contract (DESIGN §3).

For every accepted job: exactly one final outcome (heard by its application's ``on_success`` /
``on_error``, or kept in the result store for an application that died), never two different
ones (in the callbacks, the kept value and every value published to the store); no outcome
nobody caused (a success needs a run that ended ``ok``; an error needs a run that failed or
never ended, i.e. a crash; nobody cancels); no job lost; ``not_node`` never violated by any run.
Jobs that ran more than once are counted (delivery is at-least-once).

A job held only in memory is allowed to be lost when every process holding it died (DESIGN §3,
"Memory storage trades durability for speed"): a job whose application incarnation died
(SIGKILL or SIGTERM) after accepting it, while a memory node was also killed or terminated after
that, and whose last run (if any) was on a memory node, is counted as ``lost_memory_only``
rather than ``lost``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.nemesis.ledger import Accepted, Ledgers, Run

#: Faults that end a process's life (an application's memory; a memory node's jobs).
DEATHS = ("app_kill", "app_term", "node_kill", "node_term")


@dataclass(frozen=True)
class Death:
    """A process the schedule took down, at a wall-clock time."""

    at: float
    kind: str
    target: str


@dataclass
class Verdict:
    """The numbers of one run; ``examples`` says what went wrong for the first few jobs."""

    accepted: int = 0
    outcomes: int = 0
    lost: int = 0
    lost_memory_only: int = 0
    duplicate_outcomes: int = 0
    phantom_outcomes: int = 0
    not_node_violations: int = 0
    ran_more_than_once: int = 0
    failed_by_crashes: int = 0
    outcomes_from_store_only: int = 0
    stored_more_than_once: int = 0  # the same outcome published twice (harmless, counted)
    errors: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        bad = self.lost + self.duplicate_outcomes + self.phantom_outcomes
        return bad + self.not_node_violations == 0 and self.accepted > 0

    def numbers(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("examples")
        return out


def _caused(outcome: str, runs: list[Run]) -> bool:
    """Whether some run of the job explains ``outcome`` (``kind:type``)."""
    kind = outcome.split(":", 1)[0]
    if kind == "success":
        return any(r.event == "ok" for r in runs)
    if kind == "error":
        ended = {(r.node, r.pid, r.attempt) for r in runs if r.event != "start"}
        crashed = any((r.node, r.pid, r.attempt) not in ended for r in runs if r.event == "start")
        return crashed or any(r.event == "fail" for r in runs)
    return False  # cancelled: nobody cancels a job here


def excused(
    job: Accepted, runs: list[Run], deaths: Iterable[Death], memory_nodes: set[str]
) -> bool:
    """Whether ``job`` may be gone with the memory of dead processes (see the module docstring)."""
    if runs and runs[-1].node not in memory_nodes:
        return False  # last held by a Redis node: its record (or its outcome) must survive
    later = [d for d in deaths if d.at >= job.at]
    app_died = any(d.target == job.app and d.kind.startswith("app_") for d in later)
    node_died = any(d.target in memory_nodes and d.kind.startswith("node_") for d in later)
    return app_died and node_died


class Checker:
    """Judges one run. ``store`` maps job ids to the outcome kept in the result store."""

    def __init__(
        self,
        ledgers: Ledgers,
        store: dict[str, str],
        published: dict[str, list[str]],
        deaths: list[Death],
        memory_nodes: set[str],
        t0: float = 0.0,
    ) -> None:
        self.ledgers = ledgers
        self.store = store
        self.published = published
        self.deaths = deaths
        self.memory_nodes = memory_nodes
        self.t0 = t0  # the wall-clock time of the schedule's start: examples give offsets
        self.verdict = Verdict(accepted=len(ledgers.accepted))
        self._errors: Counter[str] = Counter()

    def _example(self, what: str, job: Accepted) -> None:
        if len(self.verdict.examples) < 10:
            runs = " ".join(
                f"{r.event}@{r.node}#{r.attempt}@{r.at - self.t0:.2f}s"
                for r in self.ledgers.runs.get(job.job_id, [])
            )
            heard = self.ledgers.callbacks.get(job.job_id, [])
            self.verdict.examples.append(
                f"{what}: {job.job_id} ({job.kind}, {job.nid}, accepted at "
                f"{job.at - self.t0:.2f}s, not_node {job.not_node}) "
                f"callbacks={heard} store={self.store.get(job.job_id)} "
                f"published={self.published.get(job.job_id, [])} runs=[{runs}]"
            )

    def check(self) -> Verdict:
        for job in self.ledgers.accepted.values():
            self._job(job)
        self.verdict.errors = dict(self._errors)
        return self.verdict

    def _job(self, job: Accepted) -> None:
        v = self.verdict
        runs = self.ledgers.runs.get(job.job_id, [])
        heard = self.ledgers.callbacks.get(job.job_id, [])
        kept = self.store.get(job.job_id)
        seen = [*heard, *([kept] if kept else [])]
        if job.not_node and any(r.node == job.not_node for r in runs):
            v.not_node_violations += 1
            self._example("not_node violated", job)
        if sum(1 for r in runs if r.event == "ok") > 1:
            v.ran_more_than_once += 1
        if not seen:
            if excused(job, runs, self.deaths, self.memory_nodes):
                v.lost_memory_only += 1
            else:
                v.lost += 1
                self._example("lost", job)
            return
        v.outcomes += 1
        v.outcomes_from_store_only += not heard
        kinds = {s.split(":", 1)[0] for s in seen}
        kinds |= set(self.published.get(job.job_id, []))
        v.stored_more_than_once += len(self.published.get(job.job_id, [])) > 1
        if len(heard) > 1 or len(kinds) > 1:
            v.duplicate_outcomes += 1
            self._example("duplicate outcome", job)
        if not all(_caused(s, runs) for s in seen):
            v.phantom_outcomes += 1
            self._example("phantom outcome", job)
        for s in seen[:1]:
            if s.startswith("error"):
                self._errors[s.split(":", 1)[1]] += 1
                v.failed_by_crashes += job.kind != "failing"
