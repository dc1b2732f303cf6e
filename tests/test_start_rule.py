"""The start rule on its own: NodeCore.start_next and start_batch decide which ready jobs start
(unknown names fail, def jobs need no slot, async and deferred jobs wait for one, write-ahead
begins without writing); the node driver, the write-ahead path and the simulation all call it."""

from __future__ import annotations

from typing import Any

from reactor import Config
from reactor.core.node import NodeCore
from reactor.jobs import record as R
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry
from tests.fake_port import RecordingPort


async def _async_body(args: dict[str, Any]) -> None:
    pass


def _def_body(args: dict[str, Any]) -> None:
    pass


KINDS = {"a": JobEntry("a", _async_body), "d": JobEntry("d", _def_body)}


class _Port(RecordingPort):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []
        self.started: list[str] = []

    def write(self, record: JobRecord) -> None:
        self.written.append(record.id)

    def cancelled(self, job: JobRecord) -> None:
        pass

    def starting(self, job: JobRecord, wall: float) -> None:
        self.started.append(job.id)


def _core(port: _Port, capacity: int = 1) -> NodeCore:
    return NodeCore(
        port,
        name="n",
        session="s",
        links=[],
        config=Config(),
        capacity=capacity,
        job_names=list(KINDS),
        durable=False,
        where="",
        kinds=KINDS.get,
    )


def _queue(core: NodeCore, *specs: tuple[str, str]) -> None:
    records = []
    for job_id, name in specs:
        record = JobRecord(job_id, name, b"\x80")
        record.status = R.QUEUED
        records.append(record)
    core.resume(records, 0.0, 0.0)


def _ids(core: NodeCore, *, write: bool = True) -> list[str]:
    ids = []
    while (started := core.start_next(0.0, 1.0, write=write)) is not None:
        ids.append(started[0].id)
    return ids


def test_unknown_names_fail_def_jobs_take_no_slot_async_jobs_wait_for_one() -> None:
    port = _Port()
    core = _core(port, capacity=1)
    _queue(core, ("a1", "a"), ("x", "nope"), ("a2", "a"), ("d1", "d"))
    assert _ids(core) == ["a1", "d1"]  # a2 found the one slot taken; d1 needs none
    assert [j.id for j in core.slot_wait] == ["a2"]
    assert "x" not in core.jobs  # failed with NoSuchJob (and, with no distributor, forgotten)
    assert port.started == ["a1", "d1"] and port.written[:2] == ["a1", "x"]
    assert core.jobs["a1"].phase == R.RUNNING and core.jobs["a1"].attempt == 1
    core.finished(core.jobs["d1"], Attempt(Outcome.DONE, {}, None), 0.0, 1.0)
    assert _ids(core) == []  # the async job still holds the slot
    core.finished(core.jobs["a1"], Attempt(Outcome.DONE, {}, None), 0.0, 1.0)
    core.slot_freed()
    assert _ids(core) == ["a2"]


def test_a_batch_begins_without_writing_and_waiters_take_slots_def_jobs_free() -> None:
    port = _Port()
    core = _core(port, capacity=1)
    _queue(core, ("d1", "d"), ("a1", "a"))
    batch = core.start_batch(0.0, 1.0, room=10)
    assert [job.id for job, _ in batch] == ["d1"] and port.written == []
    assert [j.id for j in core.slot_wait] == ["a1"]  # the begun def job holds the slot
    job, _ = batch[0]
    assert core.written(job, 0.0)
    core.finished(job, Attempt(Outcome.DONE, {}, None), 0.0, 1.0)
    # No async job ends to free a slot: the rule itself hands the free slot to the waiter.
    assert [job.id for job, _ in core.start_batch(0.0, 1.0, room=10)] == ["a1"]


def test_a_written_job_cancelled_meanwhile_is_dropped() -> None:
    port = _Port()
    core = _core(port, capacity=2)
    _queue(core, ("a1", "a"))
    [(job, _)] = core.start_batch(0.0, 1.0, room=10)
    job.cancel_requested = True
    assert not core.written(job, 0.0)
    assert core.running == 0 and job.status == R.CANCELLED
