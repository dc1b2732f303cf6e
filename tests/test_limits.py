"""Flow control in the core (issue 20): concurrency and rate limits decided by the start rule
through Limits and a MemoryGate, fair keys taking turns in the run queue, and the option checks
(one-line ConfigErrors at decoration and enqueue time)."""

from __future__ import annotations

from typing import Any

import pytest

from reactor import Config, job
from reactor.core.gate import MemoryGate, window
from reactor.core.limits import Denied
from reactor.core.node import NodeCore
from reactor.errors import ConfigError
from reactor.jobs import record as R
from reactor.jobs.limits import SLOT, START, Claim, limits_wire, parse_rate
from reactor.jobs.options import EnqueueOptions
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobEntry, JobRegistry
from tests.fake_port import RecordingPort


def _body(args: dict[str, Any]) -> None:
    pass


def _core(gate: MemoryGate | None = None, *, capacity: int = 100, name: str = "n") -> NodeCore:
    registry = JobRegistry()
    registry.define("plain", _body)
    registry.define("two", _body, concurrency=2)
    registry.define("rated", _body, rate=(3, 1))
    return NodeCore(
        RecordingPort(),
        name=name,
        session="s",
        links=[],
        config=Config(),
        capacity=capacity,
        job_names=registry.names(),
        durable=False,
        where="",
        kinds=registry.get,
        gate=gate,
    )


def _queue(core: NodeCore, *jobs: tuple[str, str, list[Any] | None]) -> None:
    records = []
    for job_id, name, limits in jobs:
        record = JobRecord(job_id, name, b"\x80", status=R.QUEUED, limits=limits)
        records.append(record)
    core.resume(records, 0.0, 0.0)


def _start_all(core: NodeCore, now: float) -> list[JobRecord]:
    started = []
    while (s := core.start_next(now, 1000.0 + now)) is not None:
        started.append(s[0])
    return started


def _end(core: NodeCore, record: JobRecord, now: float) -> None:
    core.finished(record, Attempt(Outcome.DONE, {}, None), now, 1000.0 + now)


def test_a_concurrency_limit_of_two_starts_two_and_the_next_when_one_ends() -> None:
    core = _core()
    _queue(core, *((f"j{i}", "two", None) for i in range(5)), ("p", "plain", None))
    first = _start_all(core, 0.0)
    assert [j.id for j in first] == ["j0", "j1", "p"]  # plain jobs are not held behind limits
    assert core.limits.waiting() == {"name:two": 3}
    _end(core, first[0], 0.1)  # the slot frees: the waiter asks at once, no timer needed
    assert [j.id for j in _start_all(core, 0.1)] == ["j2"]
    assert not _start_all(core, 0.2)


def test_an_enqueue_key_limit_and_the_name_limit_both_apply() -> None:
    core = _core()
    keyed = ["t", 1, None, 0, 0, None]
    _queue(core, ("a", "plain", keyed), ("b", "plain", keyed), ("c", "plain", None))
    assert [j.id for j in _start_all(core, 0.0)] == ["a", "c"]
    _end(core, core.jobs["a"], 0.5)
    assert [j.id for j in _start_all(core, 0.5)] == ["b"]


def test_a_rate_limit_waits_on_a_timer_for_the_window_to_slide() -> None:
    core = _core()
    _queue(core, *((f"r{i}", "rated", None) for i in range(7)))
    assert len(_start_all(core, 0.0)) == 3
    # One asker waits on a timer (the window's end), the others queue behind it: no polling.
    assert len(core.timers) == 1 and core.port.armed[-1] == pytest.approx(window(1))
    assert not _start_all(core, 0.5)
    core.fire_timers(window(1) + 0.001)
    assert len(_start_all(core, window(1) + 0.001)) == 3


def test_a_retry_respects_the_limit_and_a_limit_never_fails_a_job() -> None:
    core = _core()
    _queue(core, ("a", "two", None), ("b", "two", None), ("c", "two", None))
    a, _ = _start_all(core, 0.0)
    core.finished(a, Attempt(Outcome.FAILED, {}, RuntimeError("boom")), 0.1, 1000.1)
    assert a.permit is None  # its slot went back when the attempt ended
    started = _start_all(core, 0.1)
    assert [j.id for j in started] == ["c"]  # c was waiting first; a's retry waits its delay
    assert a.status == R.ERROR and a.phase == R.WAITING  # retrying, not failed


def test_one_shared_gate_holds_the_limit_across_nodes_and_a_dead_holder_lapses() -> None:
    gate = MemoryGate(lease=3.0, poll=0.5)
    n1, n2 = _core(gate, name="n1"), _core(gate, name="n2")
    _queue(n1, ("a", "two", None), ("b", "two", None))
    _queue(n2, ("c", "two", None))
    assert len(_start_all(n1, 0.0)) == 2
    assert not _start_all(n2, 0.0)
    assert gate.running("name:two", 0.0) == 2
    # n1 dies (never renews nor releases): its slots lapse within the lease.
    n2.fire_timers(0.5)
    assert not _start_all(n2, 0.5)
    n2.fire_timers(3.01)
    assert [j.id for j in _start_all(n2, 3.01)] == ["c"]


def test_renewed_leases_do_not_lapse() -> None:
    gate = MemoryGate(lease=3.0)
    core = _core(gate)
    _queue(core, ("a", "two", None))
    _start_all(core, 0.0)
    for t in (1.0, 2.0, 3.0, 4.0):
        core.tick(t)
    assert gate.running("name:two", 4.5) == 1


def test_the_memory_gate_grants_all_claims_or_none() -> None:
    gate = MemoryGate(lease=10.0)
    slot = Claim(SLOT, "s", 1, 0)
    rate = Claim(START, "r", 1, 1)
    assert gate.acquire("h1", [slot], 0.0) is None
    denied = gate.acquire("h2", [rate, slot], 0.0)
    assert isinstance(denied, Denied) and denied.key == "s"
    assert gate.acquire("h3", [rate], 0.0) is None  # h2 took no rate start when refused


def test_fair_keys_take_turns_within_a_priority() -> None:
    core = _core()
    a = [None, 0, None, 0, 0, "A"]
    b = [None, 0, None, 0, 0, "B"]
    _queue(
        core,
        *((f"a{i}", "plain", a) for i in range(100)),
        *((f"b{i}", "plain", b) for i in range(3)),
    )
    order = [j.id for j in _start_all(core, 0.0)]
    assert order[:6] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert len(order) == 103


def test_priorities_apply_before_fair_turns() -> None:
    core = _core()
    records = [
        JobRecord("low", "plain", b"\x80", status=R.QUEUED, limits=[None, 0, None, 0, 0, "A"]),
        JobRecord("high", "plain", b"\x80", status=R.QUEUED, priority=5),
        JobRecord("mid", "plain", b"\x80", status=R.QUEUED, priority=1,
                  limits=[None, 0, None, 0, 0, "B"]),
    ]  # fmt: skip
    core.resume(records, 0.0, 0.0)
    assert [j.id for j in _start_all(core, 0.0)] == ["high", "mid", "low"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: job("x", rate_limit="20/x"), "'N/s', 'N/m' or 'N/h'"),
        (lambda: job("x", rate_limit="0/s"), "at least 1 start"),
        (lambda: job("x", concurrency=0), "whole number >= 1"),
        (lambda: limits_wire("k", None, None, None, None), "together"),
        (lambda: limits_wire(None, None, "k", "5/d", None), "'N/s', 'N/m' or 'N/h'"),
        (lambda: limits_wire("", 2, None, None, None), "non-empty string"),
        (lambda: limits_wire(None, 3, None, None, None), "needs its key"),
    ],
)
def test_bad_limits_are_one_line_config_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_enqueue_carries_its_limits_on_the_wire_and_none_without() -> None:
    assert parse_rate("20/s", "x") == (20, 1) and parse_rate("5 / h", "x") == (5, 3600)
    _, _, plain = EnqueueOptions().check()
    assert plain == []
    flow = {"concurrency_key": "t", "concurrency_limit": 2, "rate_key": "api",
            "rate_limit": "10/m", "fair_key": "t"}  # fmt: skip
    _, _, wire = EnqueueOptions(flow=flow).check()  # type: ignore[arg-type]
    assert wire[-1] == ["t", 2, "api", 10, 60, "t"]
    with pytest.raises(TypeError, match="concurrency_keys"):
        EnqueueOptions(flow={"concurrency_keys": "t"}).check()  # type: ignore[typeddict-unknown-key]


def test_job_options_declare_name_claims() -> None:
    registry = JobRegistry()
    entry = registry.define("c", _body, concurrency=4, rate=(100, 1))
    assert entry.claims == [Claim(SLOT, "name:c", 4, 0), Claim(START, "name:c", 100, 1)]
    assert JobEntry("p", _body).claims == []


def test_waits_for_limits_are_metrics_by_job_name_and_limit_kind() -> None:
    from reactor.node.views import metrics_state, snapshot
    from reactor.ops.metrics import Metrics

    core = _core()
    _queue(core, *((f"j{i}", "two", None) for i in range(5)), ("r", "rated", None))
    first = _start_all(core, 0.0)
    assert core.limits.waiting_by_name() == {("two", "concurrency"): 3}
    assert snapshot("n", core)["limit_waiting"] == {"name:two": 3}  # by limit key
    _end(core, first[0], 0.5)
    _start_all(core, 0.5)
    metrics = Metrics()
    metrics.read_state(lambda: metrics_state(core, []))
    text = metrics.exposition().decode()
    assert 'reactor_limit_waiting{job_name="two",limit="concurrency"} 2.0' in text
    assert 'reactor_limit_wait_seconds_count{job_name="two",limit="concurrency"} 1.0' in text
    assert 'reactor_limit_wait_seconds_sum{job_name="two",limit="concurrency"} 0.5' in text


def test_the_distributors_waiting_groups_take_turns_by_fair_key() -> None:
    from reactor.core.jobstate import JobState
    from reactor.core.routing import NodeState, Presence, Router
    from reactor.wire import protocol as P

    def waiting(job_id: str, fair: str | None, priority: int = 0) -> JobState:
        limits = None if fair is None else [None, 0, None, 0, 0, fair]
        options = P.job_options_wire(None, None, None, None, priority, None, None, limits)
        wire = P.new_job_wire(job_id, "plain", b"\x80", 0.0, 0.0, None, False, 0.0, options)
        return JobState.from_wire(wire, None, priority=priority)

    router = Router(lambda: False)
    node = router.nodes["n"] = NodeState("n", b"n")
    node.presence, node.capacity = Presence.UP, 1000
    for parked in [waiting(f"a{i}", "A") for i in range(50)] + [waiting("p", None)]:
        router.park(parked)
    for parked in [waiting(f"b{i}", "B") for i in range(2)] + [waiting("hi", "C", priority=1)]:
        router.park(parked)
    order = []
    for sent, to in router.drain():
        router.charge(sent, to)
        order.append(sent.id)
    assert order[:6] == ["hi", "a0", "p", "b0", "a1", "b1"]
    assert len(order) == 54 and router.waiting == 0


def test_a_jobs_limits_survive_its_redis_record() -> None:
    from reactor.storage.redis_layout import decode_record, encode_record

    limits = ["tenant:1", 2, "api", 10, 60, "tenant:1"]
    record = JobRecord("j", "two", b"\x80", status=R.QUEUED, limits=limits)
    pairs, _ = encode_record(record)
    raw = {
        str(k).encode(): v if isinstance(v, bytes) else str(v).encode()
        for k, v in zip(pairs[::2], pairs[1::2], strict=True)
    }
    back = decode_record(raw)
    assert back is not None and back.limits == limits
    plain, _ = encode_record(JobRecord("p", "plain", b"\x80"))
    assert "limits" not in plain  # a job without limits stores nothing more


def test_jobs_refused_elsewhere_ask_again_on_their_timers_and_start() -> None:
    gate = MemoryGate(lease=30.0, poll=0.5)
    core = _core(gate)
    # Fill both keys from elsewhere, so the two jobs below are refused and become askers.
    assert (
        gate.acquire("other", [Claim(SLOT, "key:x", 1, 0), Claim(SLOT, "key:y", 1, 0)], 0.0) is None
    )
    core.resume(
        [
            JobRecord("a", "plain", b"\x80", status=R.QUEUED, limits=["x", 1, None, 0, 0, None]),
            JobRecord("b", "plain", b"\x80", status=R.QUEUED, limits=["y", 1, None, 0, 0, None]),
        ],
        0.0,
        0.0,
    )
    assert not _start_all(core, 0.0)
    gate.release("other", [Claim(SLOT, "key:x", 1, 0), Claim(SLOT, "key:y", 1, 0)])
    core.fire_timers(0.6)
    assert sorted(j.id for j in _start_all(core, 0.6)) == ["a", "b"]


class _RemoteGate(MemoryGate):
    """A gate that answers later (as the Redis gate does): questions wait in ``asked``."""

    def __init__(self) -> None:
        super().__init__(lease=30.0)
        self.asked: list[tuple[str, list[Claim]]] = []
        self.released: list[str] = []

    def acquire(self, holder: str, claims: list[Claim], now: float) -> Any:
        from reactor.core.limits import PENDING

        self.asked.append((holder, claims))
        return PENDING

    def release(self, holder: str, claims: list[Claim]) -> None:
        self.released.append(holder)


def test_a_remote_gate_is_asked_once_per_key_and_its_answers_start_or_park_jobs() -> None:
    gate = _RemoteGate()
    core = _core(gate)
    _queue(core, ("a", "two", None), ("b", "two", None), ("c", "two", None))
    assert not _start_all(core, 0.0)
    assert [h for h, _ in gate.asked] == ["n/s/a"]  # one question per key; b and c wait behind a
    core.limits.answered("a", None, 0.01)  # granted: a starts, b asks next
    assert [j.id for j in _start_all(core, 0.01)] == ["a"]
    assert [h for h, _ in gate.asked] == ["n/s/a", "n/s/b"]
    core.limits.answered("b", Denied("name:two", 0.5), 0.02)  # refused: b waits on a timer
    assert not _start_all(core, 0.02) and len(core.timers) == 1
    core.fire_timers(0.6)
    assert not _start_all(core, 0.6)  # b asked again (pending)
    core.jobs["b"].revoked = True  # meanwhile its copy went stale: a late grant is given back
    core.limits.answered("b", None, 0.7)
    assert gate.released == ["n/s/b"] and core.jobs["b"].permit is None
