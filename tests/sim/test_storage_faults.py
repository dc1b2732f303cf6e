"""Storage faults (tests/sim/storage.py) scripted one at a time on the real cores.

The seeded runs of test_simulation draw these faults at random for half the seeds; here each one
is played at an exact time with an exact expected outcome: a lost write never becomes a silent
loss or a cancel nobody asked for, a corrupt record is quarantined and its job still ends once,
and a slow store only delays.
"""

from __future__ import annotations

from tests.sim.scenario import violations
from tests.sim.storage import StorageFaults
from tests.sim.world import Faults, World


def _world(faults: StorageFaults, *nodes: tuple[str, bool, int]) -> World:
    return World(0, distributors=1, nodes=list(nodes), faults=Faults(), storage_faults=faults)


def test_a_lost_write_ends_its_job_with_job_lost_not_silence() -> None:
    """Redis restarts 0.1 s after storing two deferred jobs and loses them (torn tail): the node
    still holds them, finds their records gone when they come due and fails them with JobLost,
    a failure the fault caused; the jobs stored earlier, and synced, run."""
    world = _world(StorageFaults(torn_tail=1.0), ("a", True, 8))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    synced = [d.enqueue({"dur": 0.01}, after=3.0) for _ in range(3)]
    world.clock.run_until(2.0)
    lost = [d.enqueue({"dur": 0.01}, after=2.0) for _ in range(2)]
    world.clock.run_until(2.1)
    storage = world.nodes["a"].storage
    assert set(lost) <= set(storage.records)
    storage.restart(world.clock.now)
    assert not set(lost) & set(storage.records)
    world.clock.run_until(8.0)
    assert violations(world) == []
    assert all(world.runs[i].outcomes == ["success"] for i in synced)
    for job_id in lost:
        assert world.runs[job_id].outcomes == ["failure"]
        assert world.runs[job_id].error == "JobLost"
        assert world.runs[job_id].runs == []


def test_a_corrupt_record_is_quarantined_and_its_job_still_ends_once() -> None:
    """Every record reads back corrupt at the node's restart: it resumes none of them, and the
    distributor, which still owns the jobs, has them run again: one outcome each."""
    world = _world(StorageFaults(corrupt=1.0), ("a", True, 8))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    ids = [d.enqueue({"dur": 0.01}, after=2.0) for _ in range(4)]
    world.clock.run_until(0.5)
    node = world.nodes["a"]
    node.crash()
    world.clock.at(0.6, node.start)
    world.clock.run_until(10.0)
    assert violations(world) == []
    assert node.storage.touched == set(ids)
    assert all(world.runs[i].outcomes == ["success"] for i in ids)
    assert all(len(world.runs[i].runs) == 1 for i in ids)


def test_a_slow_store_delays_acknowledgements_but_loses_nothing() -> None:
    world = _world(StorageFaults(flush_delay=0.5), ("a", True, 4), ("b", True, 4))
    d = world.distributors[0]
    world.clock.run_until(0.2)
    ids = [d.enqueue({"dur": 0.02}) for _ in range(40)]
    world.clock.at(1.0, world.nodes["a"].crash)
    world.clock.at(1.5, world.nodes["a"].start)
    world.clock.run_until(20.0)
    assert violations(world) == []
    assert all(world.runs[i].outcomes == ["success"] for i in ids)
    assert not world.nodes["a"].storage.touched


def test_seeds_draw_every_storage_fault_and_keep_their_network_schedule() -> None:
    drawn = [StorageFaults.draw(seed) for seed in range(400)]
    assert sum(not f.any for f in drawn) > 100
    assert any(f.torn_tail and f.restarts for f in drawn)
    assert any(f.corrupt for f in drawn)
    assert any(f.flush_delay for f in drawn)
    # The world's own stream is untouched: a seed's cluster is the same with or without them.
    plain, faulty = World(7, storage_faults=StorageFaults()), World(7)
    assert [(n, s.durable) for n, s in ((k, v.storage) for k, v in plain.nodes.items())] == [
        (n, s.durable) for n, s in ((k, v.storage) for k, v in faulty.nodes.items())
    ]
