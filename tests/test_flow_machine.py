"""The core's FlowMachine (sans-I/O): which steps start after which outcomes, and when a flow
ends; and the flow builders' checks (one-line FlowErrors)."""

from __future__ import annotations

import pytest

from reactor import FlowError, chain, chord, group, step
from reactor.core.flow import (
    CANCELLED,
    ENQUEUED,
    FAILED,
    PENDING,
    SKIPPED,
    SUCCEEDED,
    FlowMachine,
)


def names(launches):
    return [(launch.number, launch.name) for launch in launches]


def test_a_chain_starts_one_step_at_a_time_with_the_previous_args_under_its_own() -> None:
    m = FlowMachine(chain(step("a", {"x": 1}), step("b", {"y": 2, "x": 9}), step("c")))
    first = m.start()
    assert names(first) == [(0, "a")] and first[0].args == {"x": 1}
    assert m.status == [ENQUEUED, PENDING, PENDING]
    second = m.succeeded(0, {"x": 1, "z": 3})
    assert names(second) == [(1, "b")]
    assert second[0].args == {"x": 9, "z": 3, "y": 2}  # its own keys win
    third = m.succeeded(1, {"out": "b"})
    assert names(third) == [(2, "c")] and third[0].args == {"out": "b"}
    assert not m.done
    assert m.succeeded(2, {"end": True}) == []
    assert m.done and m.error is None and m.result == {"end": True}


def test_a_group_starts_every_member_and_its_result_keeps_their_order() -> None:
    m = FlowMachine(group(step("s", {"i": i}) for i in range(5)))
    launches = m.start()
    assert [launch.args["i"] for launch in launches] == [0, 1, 2, 3, 4]
    for number in (3, 0, 4, 1):
        assert m.succeeded(number, {"i": number * 10}) == []
        assert not m.done
    m.succeeded(2, {"i": 20})
    assert m.done and m.result == [{"i": 0}, {"i": 10}, {"i": 20}, {"i": 30}, {"i": 40}]


def test_a_chord_callback_gets_the_results_once_every_member_succeeded() -> None:
    m = FlowMachine(chord(group(step("m", {"i": i}) for i in range(3)), step("cb", {"k": 1})))
    assert len(m.start()) == 3
    assert m.succeeded(2, {"i": 2}) == [] and m.succeeded(0, {"i": 0}) == []
    callback = m.succeeded(1, {"i": 1})
    assert names(callback) == [(3, "cb")]
    assert callback[0].args == {"results": [{"i": 0}, {"i": 1}, {"i": 2}], "k": 1}
    m.succeeded(3, {"sum": 3})
    assert m.result == {"sum": 3}


def test_a_failure_ends_the_flow_once_and_later_steps_never_start() -> None:
    m = FlowMachine(chain(step("a"), group(step("g1"), step("g2")), step("z")))
    m.start()
    assert names(m.succeeded(0, {})) == [(1, "g1"), (2, "g2")]
    error = RuntimeError("g1 broke")
    assert m.failed(1, error) is True
    assert m.done and m.error is error
    assert m.status == [SUCCEEDED, FAILED, ENQUEUED, SKIPPED]
    # The group's other member runs to its end: recorded, starts nothing, ends nothing again.
    assert m.succeeded(2, {}) == []
    assert m.failed(2, RuntimeError("late")) is False
    assert m.status == [SUCCEEDED, FAILED, SUCCEEDED, SKIPPED] and m.error is error


def test_a_chord_with_a_failing_member_never_runs_its_callback() -> None:
    m = FlowMachine(chord(group(step("m") for _ in range(3)), step("cb")))
    m.start()
    m.succeeded(0, {})
    assert m.failed(1, ValueError("no")) is True
    assert m.succeeded(2, {}) == []
    assert m.status[3] == SKIPPED


def test_each_outcome_counts_once() -> None:
    m = FlowMachine(chain(group(step("a"), step("b")), step("c")))
    m.start()
    assert m.succeeded(0, {"n": 1}) == []
    assert m.succeeded(0, {"n": 2}) == []  # a duplicate outcome changes nothing
    assert m.failed(0, RuntimeError()) is False
    assert names(m.succeeded(1, {"n": 3})) == [(2, "c")]
    assert m.succeeded(1, {}) == []


def test_cancel_names_the_enqueued_steps_and_skips_the_rest() -> None:
    m = FlowMachine(chain(group(step("a"), step("b")), step("c")))
    m.start()
    m.succeeded(0, {})
    marker = RuntimeError("cancelled")
    assert m.cancel(marker) == [1]
    assert m.done and m.error is marker and m.status == [SUCCEEDED, ENQUEUED, SKIPPED]
    assert m.cancel(marker) == []
    assert m.failed(1, marker, cancelled=True) is False
    assert m.status[1] == CANCELLED


def test_nesting_a_group_of_chains_inside_a_chain() -> None:
    flow = chain(
        step("first", {"v": 1}),
        group(chain(step("a1"), step("a2")), chain(step("b1"), step("b2"))),
        step("last"),
    )
    m = FlowMachine(flow)
    assert names(m.start()) == [(0, "first")]
    launched = m.succeeded(0, {"v": 2})
    assert names(launched) == [(1, "a1"), (3, "b1")] and launched[0].args == {"v": 2}
    assert names(m.succeeded(3, {"b": 1})) == [(4, "b2")]
    assert names(m.succeeded(1, {"a": 1})) == [(2, "a2")]
    assert m.succeeded(4, {"b": 2}) == []
    last = m.succeeded(2, {"a": 2})
    assert names(last) == [(5, "last")] and last[0].args == {"results": [{"a": 2}, {"b": 2}]}
    m.succeeded(5, {"done": 1})
    assert m.result == {"done": 1}
    assert [s[2] for s in m.steps()] == [SUCCEEDED] * 6


def test_a_group_of_10000_steps_works_in_linear_time() -> None:
    size = 10_000
    m = FlowMachine(chord(group(step("m", {"i": i}) for i in range(size)), step("cb")))
    assert len(m.start()) == size
    for number in range(size - 1):
        assert m.succeeded(number, {"i": number}) == []
    callback = m.succeeded(size - 1, {"i": size - 1})
    assert [r["i"] for r in callback[0].args["results"]] == list(range(size))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: group(), "an empty group"),
        (lambda: chain(), "an empty chain"),
        (lambda: group([]), "an empty group"),
        (lambda: chain(step("a"), "b"), "part 1 of a chain is str"),
        (lambda: group(step("a"), {"name": "b"}), "part 1 of a group is dict"),
        (lambda: chord([], step("cb")), "an empty group"),
        (lambda: chord(group(step("a")), "cb"), "a chord's callback must be a step"),
        (lambda: step(""), "non-empty string"),
        (lambda: step("a", [1]), "args must be a dict"),
        (lambda: step("a", period=5.0), "cannot take period="),
        (lambda: step("a", on_success=print), "cannot take on_success="),
        (lambda: step("a", bogus=1), "bogus"),
        (lambda: step("a", timeout=-1), "timeout"),
    ],
)
def test_bad_flows_fail_when_built_with_one_line(build, message) -> None:
    with pytest.raises(FlowError, match=message) as caught:
        build()
    assert "\n" not in str(caught.value)


def test_step_options_are_kept_for_its_job() -> None:
    built = step("a", {"k": 1}, node="db", priority=3, max_attempt=2, tags=["x"])
    assert built.options.node == "db" and built.options.priority == 3
    assert built.options.max_attempt == 2 and built.options.tags == ["x"]


def test_resume_replays_recorded_outcomes_and_launches_the_rest() -> None:
    flow = chain(step("a", {"n": 1}), group(step("b"), step("c")), step("d"))
    m = FlowMachine(flow)
    # a succeeded, b succeeded, c had started with no recorded end: c again, d after it.
    launches = m.resume({0: (True, {"n": 2}), 1: (True, {"b": 1})})
    assert names(launches) == [(2, "c")] and launches[0].args == {"n": 2}
    assert m.status[:2] == [SUCCEEDED, SUCCEEDED]
    last = m.succeeded(2, {"c": 1})
    assert names(last) == [(3, "d")] and last[0].args == {"results": [{"b": 1}, {"c": 1}]}


def test_resume_of_a_recorded_failure_or_a_finished_flow_launches_nothing() -> None:
    failed = FlowMachine(chain(step("a"), step("b"), step("c")))
    error = RuntimeError("b")
    assert failed.resume({0: (True, {}), 1: (False, error)}) == []
    assert failed.done and failed.error is error and failed.status[2] == SKIPPED
    finished = FlowMachine(chain(step("a"), step("b")))
    assert finished.resume({0: (True, {}), 1: (True, {"end": 1})}) == []
    assert finished.done and finished.result == {"end": 1}


def test_a_flow_survives_its_encoding() -> None:
    import datetime as dt

    from reactor.jobs.flow_codec import decode_flow, encode_flow

    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    flow = chain(
        step("a", {"k": [1, 2]}, node="db", tags=["x"], run_at=at),
        chord(group(step("m", {"i": i}) for i in range(3)), step("cb", priority=2)),
    )
    again = decode_flow(encode_flow(flow))
    assert repr(again) == repr(flow)
    first = again.parts[0]
    assert first.options.node == "db" and first.options.tags == ["x"]
    assert first.options.run_at == at.timestamp()
    assert [s[1] for s in FlowMachine(again).steps()] == ["a", "m", "m", "m", "cb"]
    with pytest.raises(ValueError, match="not an encoded flow"):
        decode_flow(b"\x93\x01")
