"""The shared batching writer (reactor.storage.writer) against a fake store and a fake clock:
batches in put order, a refused batch retried in front of later writes, flush at close, and what
a close could not write reported and kept."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from reactor.storage.writer import BatchWriter

log = logging.getLogger("reactor.test-writer")


class FakeStore:
    """Records each batch it is handed; refuses the first ``refuse`` of them, and holds each
    write until ``gate`` is set (set from the start unless ``hold``)."""

    def __init__(self, *, refuse: int = 0, hold: bool = False) -> None:
        self.batches: list[list[tuple[int, str]]] = []
        self.refuse = refuse
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()
        self.called = asyncio.Event()
        self.during_write: list[tuple[int, str]] = []  # put while the first batch is out
        self.writer: BatchWriter[int, str] | None = None

    async def write(self, batch: dict[int, str]) -> None:
        self.batches.append(list(batch.items()))
        self.called.set()
        if len(self.batches) == 1 and self.writer is not None:
            for key, value in self.during_write:
                self.writer.put(key, value)
        await self.gate.wait()
        if self.refuse:
            self.refuse -= 1
            raise RedisConnectionError("connection refused")


class FakeClock:
    """The writer's sleep: records each backoff and returns at once."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def make(store: FakeStore, clock: FakeClock, limit: int | None = None) -> BatchWriter[int, str]:
    writer = BatchWriter(
        store.write,
        what="things",
        where="redis://fake",
        log=log,
        limit=limit,
        sleep=clock.sleep,
        backoff=lambda failures: 10.0 * failures,
    )
    store.writer = writer
    return writer


async def test_writes_put_together_go_in_one_batch_in_put_order() -> None:
    store, clock = FakeStore(), FakeClock()
    writer = make(store, clock)
    for key in (3, 1, 2):
        writer.put(key, f"v{key}")
    writer.put(1, "v1 again")  # a key put again replaces its pending value, in its place
    assert await writer.close() == 0
    assert store.batches == [[(3, "v3"), (1, "v1 again"), (2, "v2")]]
    assert (writer.written, writer.dropped, writer.unwritten, clock.slept) == (3, 0, 0, [])


async def test_a_refused_batch_is_retried_with_backoff_in_front_of_later_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = FakeStore(refuse=2), FakeClock()
    store.during_write = [(2, "b")]
    writer = make(store, clock)
    writer.put(1, "a")
    assert await writer.close() == 0  # 2 is put while the close waits: the same task writes it
    assert store.batches == [[(1, "a")], [(1, "a"), (2, "b")], [(1, "a"), (2, "b")]]
    assert clock.slept == [10.0, 20.0]  # the backoff of the 1st and the 2nd failure in a row
    assert (writer.written, writer.failures) == (2, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["cannot write 1 things to redis://fake (connection refused); retrying"]


async def test_close_flushes_what_is_pending_before_it_ends() -> None:
    store, clock = FakeStore(hold=True), FakeClock()
    writer = make(store, clock)
    writer.put(1, "a")
    await asyncio.wait_for(store.called.wait(), 5.0)
    writer.put(2, "b")  # pending behind the batch in flight
    closing = asyncio.ensure_future(writer.close(timeout=30.0))
    store.gate.set()
    assert await asyncio.wait_for(closing, 30.0) == 0
    assert store.batches == [[(1, "a")], [(2, "b")]]
    assert writer.written == 2


async def test_what_a_close_could_not_write_is_reported_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = FakeStore(hold=True), FakeClock()
    writer = make(store, clock)
    writer.put(1, "a")
    await asyncio.wait_for(store.called.wait(), 5.0)
    writer.put(2, "b")
    assert await writer.close(timeout=0) == 2  # the batch in flight counts, not only the pending
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["2 things were not written to redis://fake before it stopped"]
    assert writer.unwritten == 2
    store.gate.set()
    writer.put(3, "c")  # a put starts the task again: the kept writes go first, in order
    assert await writer.close() == 0
    assert store.batches[-1] == [(1, "a"), (2, "b"), (3, "c")]
    assert writer.written == 3


async def test_past_its_limit_the_oldest_pending_write_is_dropped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = FakeStore(hold=True), FakeClock()
    writer = make(store, clock, limit=2)
    writer.put(1, "a")
    await asyncio.wait_for(store.called.wait(), 5.0)  # 1 is in flight, not pending
    writer.put(2, "b")
    writer.put(3, "c")
    writer.put(3, "c2")  # a key already pending takes no room
    assert writer.dropped == 0
    writer.put(4, "d")
    assert writer.dropped == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["1 things dropped: more than 2 wait for redis://fake"]
    store.gate.set()
    assert await writer.close() == 0
    assert store.batches == [[(1, "a")], [(3, "c2"), (4, "d")]]
