"""Workflows in the deterministic simulation: the real FlowMachine over the real delivery cores,
under each seed's faults (drops, duplicates, partitions, crashes, freezes, stops, lost nodes).
``REACTOR_SIM_FLOW_SEEDS`` sets how many seeds run (10,000 by default)."""

from __future__ import annotations

import logging
import os

import pytest

from tests.sim.flows import dependencies, draw_flow, flow_violations, run_flow_seed
from tests.sim.scenario import violations

SEEDS = int(os.environ.get("REACTOR_SIM_FLOW_SEEDS", "10000"))


def test_dependencies_follow_the_flow_shape() -> None:
    from reactor import chain, chord, group, step

    flow = chain(step("a"), group(chain(step("b"), step("c")), step("d")), step("e"))
    assert dependencies(flow) == {0: set(), 1: {0}, 2: {0, 1}, 3: {0}, 4: {0, 1, 2, 3}}
    assert dependencies(chord(group(step("m"), step("n")), step("cb"))) == {
        0: set(),
        1: set(),
        2: {0, 1},
    }


def test_a_few_seeds_run_flows_to_their_end() -> None:
    ended = 0
    for seed in range(50):
        world, workload = run_flow_seed(seed)
        assert flow_violations(world, workload) == [], f"seed {seed}"
        assert violations(world) == [], f"seed {seed}"
        ended += sum(1 for flow in workload.flows if flow.ends)
    assert ended > 50  # most flows end (a few wait on a node lost for good)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_random_seeds_keep_every_flow_invariant() -> None:
    logging.disable(logging.CRITICAL)
    try:
        failing: dict[int, list[str]] = {}
        flows = ended = 0
        for seed in range(SEEDS):
            world, workload = run_flow_seed(seed)
            found = flow_violations(world, workload) + violations(world)
            if found:
                failing[seed] = found
            flows += len(workload.flows)
            ended += sum(1 for flow in workload.flows if flow.ends)
    finally:
        logging.disable(logging.NOTSET)
    lines = [f"seed {seed}: {found[0]}" for seed, found in failing.items()]
    assert not failing, f"{len(failing)} of {SEEDS} seeds broke an invariant:\n" + "\n".join(
        lines[:20]
    )
    print(f"{SEEDS} seeds: {flows} flows, {ended} ended, none broken")
    assert ended > 0.9 * flows


def test_draw_flow_gives_each_shape() -> None:
    import random

    shapes = {type(draw_flow(random.Random(i))).__name__ for i in range(30)}
    assert shapes == {"Chain", "Chord"}
