"""Workflows as a workload of the simulation: the real :class:`FlowMachine` drives flows whose
steps are jobs of the simulated distributors, under the seed's faults, and the checker holds
the flow invariants: a step starts only after every step it depends on succeeded, each step
starts at most once (a chord's callback once, after all members), a flow ends at most once and
never with an outcome nobody caused, and a flow whose steps all ended has ended."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from reactor.core.flow import FlowMachine, Launch
from reactor.jobs.flow import Chain, Chord, Flow, Step, chain, chord, group, step
from reactor.wire import protocol as P
from tests.sim.scenario import FAULT_PHASE, SETTLE, finished, schedule
from tests.sim.world import LOST_AFTER, SimDistributor, World


@dataclass
class SimFlow:
    """One flow of a seed: its machine and what happened to its steps."""

    name: str
    flow: Flow
    dist: SimDistributor
    machine: FlowMachine
    launched: dict[int, list[float]] = field(default_factory=dict)  # step -> enqueue times
    ended: dict[int, tuple[str, float]] = field(default_factory=dict)  # first outcome, time
    jobs: dict[int, str] = field(default_factory=dict)  # step -> job id
    ends: list[str] = field(default_factory=list)  # the flow's outcomes as reported


class FlowWorkload:
    """The flows of one seed, fed the jobs' outcomes by the world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.flows: list[SimFlow] = []
        self._steps: dict[str, tuple[SimFlow, int]] = {}
        world.on_outcome = self.outcome

    def start(self, flow: SimFlow) -> None:
        self.flows.append(flow)
        self._launch(flow, flow.machine.start())

    def _launch(self, flow: SimFlow, launches: list[Launch]) -> None:
        now = self.world.clock.now
        for launch in launches:
            flow.launched.setdefault(launch.number, []).append(now)
            job_id = flow.dist.enqueue(launch.args)
            flow.jobs[launch.number] = job_id
            self._steps[job_id] = (flow, launch.number)
        self._report(flow)

    def outcome(self, job_id: str, outcome: str, packed: bytes | None) -> None:
        found = self._steps.get(job_id)
        if found is None:
            return  # a plain job of the seed
        flow, number = found
        flow.ended.setdefault(number, (outcome, self.world.clock.now))
        if outcome == "success":
            args = P.unpack_args(packed) if packed else {}
            self._launch(flow, flow.machine.succeeded(number, args))
            return
        flow.machine.failed(number, outcome, cancelled=outcome == "cancelled")
        self._report(flow)

    def _report(self, flow: SimFlow) -> None:
        machine = flow.machine
        if machine.done and not flow.ends:
            flow.ends.append("success" if machine.error is None else "failure")


def _step(rng: random.Random) -> Step:
    """A step: a ``sim`` job that mostly succeeds (``fail``: its first attempts that fail)."""
    spec = {"dur": rng.choice([0.001, 0.01, 0.05, 0.4]), "fail": rng.choice([0] * 6 + [1, 9])}
    return step("sim", spec)


def draw_flow(rng: random.Random) -> Flow:
    """One flow: a chain, a chord, or a chain holding a group of chains."""
    kind = rng.randrange(3)
    if kind == 0:
        return chain(_step(rng) for _ in range(rng.randint(2, 4)))
    if kind == 1:
        return chord(group(_step(rng) for _ in range(rng.randint(2, 6))), _step(rng))
    members = group(chain(_step(rng), _step(rng)), _step(rng))
    return chain(_step(rng), members, _step(rng))


def dependencies(flow: Flow) -> dict[int, set[int]]:
    """Each step's number -> the steps that must succeed before it starts (numbered depth
    first, as the machine numbers them); derived here from the flow's shape, not the machine."""
    deps: dict[int, set[int]] = {}

    def walk(part: Flow, before: set[int]) -> set[int]:
        """Number ``part``'s steps, each depending on ``before``; returns every step in it."""
        if isinstance(part, Step):
            number = len(deps)
            deps[number] = set(before)
            return {number}
        if isinstance(part, Chord):
            return walk(Chain((part.header, part.body)), before)
        inside: set[int] = set()
        for child in part.parts:
            got = walk(child, before | inside if isinstance(part, Chain) else before)
            inside |= got
        return inside

    walk(flow, set())
    return deps


def schedule_flows(world: World, workload: FlowWorkload) -> None:
    """Seed 1..4 flows at random times (from a stream of their own)."""
    rng = random.Random(f"flows-{world.seed}")
    for index in range(rng.randint(1, 4)):
        dist = rng.choice(world.distributors)
        flow = draw_flow(rng)
        sim = SimFlow(f"flow{index}", flow, dist, FlowMachine(flow))
        world.clock.at(rng.uniform(0.0, 8.0), lambda s=sim: workload.start(s))


def run_flow_seed(seed: int) -> tuple[World, FlowWorkload]:
    """Play one seed's jobs, faults and flows to the end."""
    world = World(seed)
    workload = FlowWorkload(world)
    schedule(world)
    schedule_flows(world, workload)
    world.clock.run_until(FAULT_PHASE)
    end = FAULT_PHASE + SETTLE
    while world.clock.now < end and not finished(world):
        world.clock.run_until(world.clock.now + 1.0)
    if world.gate.slots:  # as run_seed: a crashed holder's slots, or a stale copy still
        world.clock.run_until(world.clock.now + LOST_AFTER + 1.0)  # running, end in a lease
    return world, workload


def flow_violations(world: World, workload: FlowWorkload) -> list[str]:
    """Every broken flow invariant, one line each."""
    found: list[str] = []
    for flow in workload.flows:
        found += _check(world, flow)
    return found


def _check(world: World, flow: SimFlow) -> list[str]:
    found: list[str] = []
    deps = dependencies(flow.flow)
    for number, times in flow.launched.items():
        if len(times) > 1:
            found.append(f"{flow.name}: step {number} started {len(times)} times")
        for dep in deps[number]:
            outcome, at = flow.ended.get(dep, ("none", float("inf")))
            if outcome != "success" or at > times[0]:
                found.append(f"{flow.name}: step {number} started before step {dep} succeeded")
    if len(flow.ends) > 1:
        found.append(f"{flow.name}: {len(flow.ends)} outcomes")
    for end in flow.ends[:1]:
        outcomes = [outcome for outcome, _ in flow.ended.values()]
        if end == "success" and (len(outcomes) != len(deps) or set(outcomes) != {"success"}):
            found.append(f"{flow.name}: success nobody caused ({flow.ended})")
        if end == "failure" and not any(o != "success" for o in outcomes):
            found.append(f"{flow.name}: failure nobody caused ({flow.ended})")
    runs = [world.runs[job_id] for job_id in flow.jobs.values()]
    if not flow.ends and runs and all(run.outcomes for run in runs):
        found.append(f"{flow.name}: every step ended, the flow did not ({flow.ended})")
    return found
