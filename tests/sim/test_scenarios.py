"""Issue 9's failure cases as scripted runs of the real cores on the simulated network.

Each test builds a small world (no random faults), scripts one fault at exact times and checks
exact outcomes: the behaviour the real-process tests in tests/faults show, here in milliseconds
and without a single sleep.
"""

from __future__ import annotations

import pytest

from reactor.wire import protocol as P
from tests.sim.scenario import violations
from tests.sim.world import INTERVAL, LOST_AFTER, TIMEOUT, Faults, World


def _world(*nodes: tuple[str, bool, int]) -> World:
    return World(0, distributors=1, nodes=list(nodes), faults=Faults())


def _settle(world: World, until: float) -> None:
    world.clock.run_until(until)
    assert violations(world) == []


def _outcomes(world: World) -> dict[str, list[str]]:
    return {job_id: run.outcomes for job_id, run in world.runs.items()}


def _where(world: World) -> dict[str, list[str]]:
    return {job_id: [r[0] for r in run.runs] for job_id, run in world.runs.items()}


def test_a_graceful_stop_hands_queued_jobs_back_and_loses_none() -> None:
    for durable in (False, True):
        world = _world(("a", durable, 1), ("b", durable, 1))
        d = world.distributors[0]
        world.clock.run_until(0.1)
        ids = [d.enqueue({"dur": 0.05}, node="a") for _ in range(20)]
        world.clock.at(0.3, world.nodes["a"].stop)
        _settle(world, 10.0)
        assert all(outcome == ["success"] for outcome in _outcomes(world).values())
        ran_on = _where(world)
        assert any("b" in ran_on[i] for i in ids), "nothing was handed to b"
        assert world.nodes["a"].process is None, "a never finished stopping"


def test_deferred_and_periodic_jobs_are_handed_back_too() -> None:
    world = _world(("a", False, 8), ("b", False, 8))
    d = world.distributors[0]
    world.clock.run_until(0.1)
    later = d.enqueue({"dur": 0.01}, node="a", after=2.0)
    periodic = d.enqueue({"dur": 0.01}, node="a", period=0.5)
    world.clock.at(0.8, world.nodes["a"].stop)
    world.clock.at(4.0, lambda: d.cancel(periodic))
    _settle(world, 8.0)
    assert _outcomes(world) == {later: ["success"], periodic: ["cancelled"]}
    assert _where(world)[later] == ["b"]
    assert "b" in _where(world)[periodic]


def test_frozen_nodes_thawed_past_the_timeout_give_no_phantom_cancel() -> None:
    world = _world(("a", False, 4), ("b", False, 4))
    d = world.distributors[0]
    world.clock.run_until(0.5)
    for node in world.nodes.values():
        node.freeze(TIMEOUT + 1.5)
    ids = [d.enqueue({"dur": 0.1}) for _ in range(10)]
    _settle(world, 10.0)
    assert all(_outcomes(world)[i] == ["success"] for i in ids)


def test_feedback_lost_in_a_cut_is_sent_again() -> None:
    world = _world(("a", False, 8))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    ids = [d.enqueue({"dur": 0.2}) for _ in range(8)]
    world.clock.at(0.25, lambda: world.net.cut.add(("d0", "a")))  # outcomes are produced now
    world.clock.at(0.7, lambda: world.net.cut.discard(("d0", "a")))
    _settle(world, 5.0)
    assert all(_outcomes(world)[i] == ["success"] for i in ids)
    assert all(len(world.runs[i].runs) == 1 for i in ids), "a lost feedback re-ran a job"


def test_a_long_partition_loses_nothing_and_revokes_the_stale_copies() -> None:
    world = _world(("a", True, 8), ("b", True, 8))
    d = world.distributors[0]
    ids: list[str] = []
    for k in range(100):  # 10 jobs/s for 10 s
        world.clock.at(0.1 + k / 10, lambda: ids.append(d.enqueue({"dur": 0.05})))
    world.clock.at(1.0, lambda: world.net.cut.add(("d0", "a")))
    world.clock.at(1.0 + 10.0, lambda: world.net.cut.discard(("d0", "a")))
    _settle(world, 30.0)
    assert len(ids) == 100 and all(_outcomes(world)[i] == ["success"] for i in ids)
    assert d.core.stats["reassigned"] > 0


def test_a_node_that_never_returns_has_its_jobs_finish_elsewhere() -> None:
    world = _world(("a", True, 8), ("b", True, 8))
    d = world.distributors[0]
    world.clock.run_until(0.1)
    ids = [d.enqueue({"dur": 0.05}, node="a", after=1.0) for _ in range(5)]
    ids += [d.enqueue({"dur": 0.3}, node="a") for _ in range(5)]
    world.clock.run_until(0.3)
    world.nodes["a"].crash()
    world.lost.add("a")
    killed = world.clock.now
    world.clock.run_until(killed + LOST_AFTER + 1.0)
    assert violations(world) == []
    assert all(_outcomes(world)[i] == ["success"] for i in ids)
    assert all(_where(world)[i][-1] == "b" for i in ids)


def test_a_second_node_under_a_live_name_is_refused_and_the_first_keeps_working() -> None:
    world = _world(("a", False, 8))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    later = d.enqueue({"dur": 0.01}, after=1.0)
    world.nodes["a"].start_twin(20.0)
    world.clock.run_until(3.0)
    assert [r[2] for r in world.refusals] == ["NodeNameTaken"]
    assert world.refusals[0][1] == "a-twin1"
    first = world.nodes["a"].process
    assert first is not None and first.session == "a-1"
    ids = [d.enqueue({"dur": 0.01}) for _ in range(5)]
    _settle(world, 6.0)
    assert all(_outcomes(world)[i] == ["success"] for i in [later, *ids])
    assert all(len(world.runs[i].runs) == 1 for i in [later, *ids])


def test_a_restarted_memory_node_gets_back_what_it_had_stored() -> None:
    world = _world(("a", False, 8))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    ids = [d.enqueue({"dur": 0.01}, after=2.0) for _ in range(5)]
    world.clock.run_until(0.5)
    world.nodes["a"].crash()  # memory storage: the deferred jobs are gone from the node
    world.clock.at(0.6, world.nodes["a"].start)
    _settle(world, 5.0)
    assert all(_outcomes(world)[i] == ["success"] for i in ids)


def test_resends_are_bounded_after_an_outage() -> None:
    world = _world(("a", False, 64))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    world.net.cut.add(("d0", "a"))
    ids = [d.enqueue({"dur": 0.01}) for _ in range(50)]
    world.clock.run_until(8.2)  # an 8 s outage: the node is gone, then lost
    world.net.cut.discard(("d0", "a"))
    sent_before = world.net.sent
    _settle(world, 12.0)
    assert all(_outcomes(world)[i] == ["success"] for i in ids)
    assert d.core.stats["feedback_received"] <= 2 * len(ids)
    heartbeats = 2 * (12.0 - 8.2) / INTERVAL
    assert world.net.sent - sent_before < 4 * len(ids) + heartbeats + 20


def test_a_stale_feedback_never_becomes_an_outcome() -> None:
    world = _world(("a", False, 8), ("b", False, 8))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    job = d.enqueue({"dur": 0.01}, after=5.0, node="a")
    world.clock.run_until(0.5)
    stale = P.Feedback(job, 99, 1, P.CANCELLED, True, P.pack_args({}), None)
    process = world.nodes["a"].process
    assert process is not None
    d.core.on_messages("a", P.routing_id("a", process.session), [stale], world.clock.now)
    assert world.runs[job].outcomes == []
    _settle(world, 7.0)
    assert world.runs[job].outcomes == ["success"]


def _crash_while_running(world: World, job_id: str, name: str, times: int) -> None:
    """Crash node ``name`` whenever job ``job_id``'s body is under way (``times`` times), and
    start it again a moment later, as a supervisor would."""
    node = world.nodes[name]
    crashed = [0]

    def check() -> None:
        process = node.process
        if crashed[0] < times and process is not None and job_id in process.bodies:
            crashed[0] += 1
            node.crash()
            world.clock.at(world.clock.now + 0.05, node.start)
        world.clock.at(world.clock.now + 0.01, check)

    world.clock.at(world.clock.now, check)


@pytest.mark.parametrize(
    ("crashes", "outcome", "runs"),
    [
        (1, "success", [(1, "crash"), (2, "ok")]),  # the crashed run counts as attempt 1
        (10, "failure", [(1, "crash"), (2, "crash"), (3, "crash")]),  # max_attempt=3 here
    ],
)
def test_a_crash_during_a_durable_job_counts_as_an_attempt(
    crashes: int, outcome: str, runs: list[tuple[int, str]]
) -> None:
    world = _world(("a", True, 1))
    d = world.distributors[0]
    world.clock.run_until(0.1)
    job = d.enqueue({"dur": 0.3})
    _crash_while_running(world, job, "a", times=crashes)
    _settle(world, 10.0)
    assert _outcomes(world)[job] == [outcome]
    assert [(r[1], r[2]) for r in world.runs[job].runs] == runs
    other = d.enqueue({"dur": 0.01})  # the node serves again: no crash loop
    _settle(world, 15.0)
    assert _outcomes(world)[other] == ["success"]


@pytest.mark.parametrize("durable", [False, True])
def test_a_node_cut_off_from_its_distributor_runs_the_jobs_it_stored(durable: bool) -> None:
    """A deferred job stored on ``a``, then the distributor silent for good (a SIGKILLed
    application, here a cut): once the job is due, ``a`` held it for the lapsed link's sync,
    forever. Past node_lost_after the node runs it on its own; the cut heals later, and the
    distributor, which declared ``a`` lost, has it run again: at-least-once, nothing lost."""
    world = _world(("a", durable, 4))
    d = world.distributors[0]
    world.clock.run_until(0.5)
    job = d.enqueue({"dur": 0.05}, node="a", after=1.0)
    world.clock.at(0.8, lambda: world.net.cut.add(("d0", "a")))
    world.clock.run_until(0.8 + LOST_AFTER + 1.0)
    assert [r[2] for r in world.runs[job].runs] == ["ok"], "the stored job never ran"
    assert _outcomes(world)[job] == []  # nobody could tell the distributor
    world.clock.at(world.clock.now, lambda: world.net.cut.discard(("d0", "a")))
    _settle(world, 20.0)
    assert _outcomes(world)[job] == ["success"]
