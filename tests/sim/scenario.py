"""One seeded run: jobs enqueued under faults, then healing, then the invariants of DESIGN §3."""

from __future__ import annotations

import random
from typing import Any

from tests.sim.limits_watch import draw_flow
from tests.sim.storage import StorageFaults
from tests.sim.world import LOST_AFTER, World

FAULT_PHASE = 12.0  # faults happen before this sim time
SETTLE = 60.0  # then everything heals and the run may take this long to finish


def _draw_options(
    rng: random.Random, options: random.Random, kinds: random.Random, names: list[str]
) -> dict[str, Any]:
    """One job's enqueue options, drawn in the order every seed was recorded with."""
    opts: dict[str, Any] = {}
    kind = rng.random()
    if kind < 0.2:
        opts["after"] = rng.uniform(0.05, 4.0)
    elif kind < 0.3:
        opts["period"] = rng.uniform(0.2, 1.5)
    if rng.random() < 0.25:
        opts["node"] = rng.choice(names)
    if rng.random() < 0.2:
        opts["not_node"] = rng.choice(names)
    if options.random() < 0.3:
        opts["priority"] = options.choice([-5, 1, 10])
    if options.random() < 0.25:
        opts["max_attempt"] = options.randint(1, 4)
    if kinds.random() < 0.25:
        opts["inline"] = True
    return opts


def _schedule_jobs(world: World) -> None:
    rng, clock = world.rng, world.clock
    # Job options come from a stream of their own, so a seed's jobs and faults stay the same
    # as before options existed (the named regression seeds replay what they were named for).
    options = random.Random(f"options-{world.seed}")
    # Which jobs are def jobs (run on the loop, no slot) comes from a third stream, likewise.
    kinds = random.Random(f"kinds-{world.seed}")
    # Concurrency keys and fair keys (issue 20) from a fourth stream, likewise.
    limits = random.Random(f"limits-{world.seed}")
    names = list(world.nodes)
    for _ in range(rng.randint(4, 20)):
        at = rng.uniform(0.0, 8.0)
        dist = rng.choice(world.distributors)
        spec = {"dur": rng.choice([0.001, 0.01, 0.05, 0.4]), "fail": rng.choice([0, 0, 0, 1, 9])}
        opts = _draw_options(rng, options, kinds, names)
        flow = draw_flow(limits)
        if flow is not None:
            opts["flow"] = flow
        cancel_at = None
        if "period" in opts:
            cancel_at = rng.uniform(at + 0.1, FAULT_PHASE + 5.0)
        elif rng.random() < 0.1:
            cancel_at = at + rng.uniform(0.0, 3.0)
        clock.at(at, lambda d=dist, s=spec, o=opts, c=cancel_at: _enqueue(world, d, s, o, c))


def _schedule_faults(world: World) -> set[str]:
    """Crashes, freezes, stops, partitions, lost nodes and twins; returns the nodes lost."""
    rng, clock = world.rng, world.clock
    names = list(world.nodes)
    lost: set[str] = set()
    for _ in range(rng.randint(0, 5)):
        at = rng.uniform(0.0, FAULT_PHASE - 1.0)
        name = rng.choice(names)
        node = world.nodes[name]
        fault = rng.choice(
            ["crash", "crash", "freeze", "freeze", "stop", "partition", "lose", "twin"]
        )
        if fault == "lose" and len(lost) + 2 <= len(names) and name not in lost:
            lost.add(name)
            clock.at(at, node.crash)
        elif fault == "crash":
            clock.at(at, node.crash)
            clock.at(at + rng.uniform(0.05, 5.0), lambda n=node: _restart(n, lost))
        elif fault == "freeze":
            seconds = rng.uniform(0.3, 6.0)
            clock.at(at, lambda n=node, s=seconds: n.freeze(s))
        elif fault == "stop":
            clock.at(at, node.stop)
            clock.at(at + rng.uniform(0.5, 6.0), lambda n=node: _restart(n, lost))
        elif fault == "twin":
            seconds = rng.uniform(0.5, 8.0)
            clock.at(at, lambda n=node, s=seconds: n.start_twin(s))
        elif fault == "partition":
            pair = (rng.choice(world.distributors).name, name)
            clock.at(at, lambda p=pair: world.net.cut.add(p))
            clock.at(at + rng.uniform(0.2, 6.0), lambda p=pair: world.net.cut.discard(p))
    return lost


def schedule(world: World) -> None:
    """Seed the application's jobs and the faults."""
    _schedule_jobs(world)
    lost = _schedule_faults(world)
    world.lost = lost

    def heal() -> None:
        world.net.cut.clear()
        world.net.faults.drop = world.net.faults.duplicate = world.net.faults.reorder = 0.0
        for n in world.nodes.values():
            _restart(n, lost)

    world.clock.at(FAULT_PHASE, heal)
    _schedule_storage_restarts(world)


def _schedule_storage_restarts(world: World) -> None:
    """Redis restarts of the seed's storage faults (on a stream of their own: the jobs and
    network faults above draw the same numbers with or without them)."""
    faults = world.storage_faults
    if not faults.restarts:
        return
    rng = random.Random(world.seed * 7919 + 104730)
    durable = [n for n in world.nodes.values() if n.storage.durable]
    for _ in range(faults.restarts if durable else 0):
        storage = rng.choice(durable).storage
        at = rng.uniform(0.0, FAULT_PHASE - 1.0)
        world.clock.at(at, lambda s=storage: s.restart(world.clock.now))


def _enqueue(
    world: World, dist: Any, spec: dict[str, Any], opts: dict[str, Any], cancel_at: float | None
) -> None:
    job_id = dist.enqueue(spec, **opts)
    if cancel_at is not None:
        world.clock.at(cancel_at, lambda: dist.cancel(job_id))


def _restart(node: Any, lost: set[str]) -> None:
    if node.name not in lost:
        node.start()


def finished(world: World) -> bool:
    """Whether every job has its outcome (or cannot have one: no eligible node is left)."""
    return all(run.outcomes or exempt(world, run) for run in world.runs.values())


def exempt(world: World, run: Any) -> bool:
    """A job no node that is still around may run."""
    alive = [n for n in world.nodes if n not in world.lost]
    job = run.job
    eligible = [n for n in alive if n != job.not_node]
    return not eligible


def violations(world: World) -> list[str]:
    """Every broken invariant of DESIGN §3, one line each."""
    found: list[str] = []
    # A job whose record a storage fault lost may rightly fail with JobLost, caused by no run.
    touched = set().union(*(n.storage.touched for n in world.nodes.values()))
    for job_id, run in world.runs.items():
        job = run.job
        oks = [r for r in run.runs if r[2] == "ok"]
        errors = [r for r in run.runs if r[2] in ("error", "crash")]  # a crash fails a run
        if len(run.outcomes) > 1:
            found.append(f"{job_id}: {len(run.outcomes)} terminal outcomes {run.outcomes}")
        if not run.outcomes and not exempt(world, run):
            found.append(f"{job_id}: lost (no outcome; runs {run.runs})")
        for outcome in run.outcomes[:1]:
            if outcome == "success" and not oks:
                found.append(f"{job_id}: success nobody caused (runs {run.runs})")
            if outcome == "failure" and not errors and job_id not in touched:
                found.append(f"{job_id}: failure nobody caused (runs {run.runs})")
            if outcome == "cancelled" and not run.cancel_asked:
                found.append(f"{job_id}: cancelled without a cancel (runs {run.runs})")
        if job.not_node is not None and any(r[0] == job.not_node for r in run.runs):
            found.append(f"{job_id}: ran on its not_node {job.not_node}")
        if run.feedbacks > len(oks) + len(errors) + 1:
            found.append(f"{job_id}: {run.feedbacks} feedbacks for {len(run.runs)} runs")
    found += world.limit_watch.violations
    found += world.limit_watch.leaked(world.clock.now)
    return found


def run_seed(seed: int, storage_faults: StorageFaults | None = None) -> World:
    """Play one seed to the end (with the storage faults drawn for it, unless given)."""
    world = World(seed, storage_faults=storage_faults)
    schedule(world)
    world.clock.run_until(FAULT_PHASE)
    end = FAULT_PHASE + SETTLE
    while world.clock.now < end and not finished(world):
        world.clock.run_until(world.clock.now + 1.0)
    if world.gate.slots:  # a crashed holder's slots lapse within their lease: give them time
        world.clock.run_until(world.clock.now + LOST_AFTER + 1.0)
    return world
