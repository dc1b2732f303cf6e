"""Retry backoff policies: the linear default, exponential growth inside its jitter envelope."""

from __future__ import annotations

import math
import random

import msgpack
import pytest

from reactor import Backoff, ConfigError, ProtocolError


def test_linear_is_jobreactors_rule_and_the_default_multiplier() -> None:
    backoff = Backoff.linear(5)
    assert [backoff.delay(k) for k in (1, 2, 3, 10)] == [5.0, 10.0, 15.0, 50.0]
    assert Backoff.linear() == Backoff.linear(5.0)
    assert Backoff.linear(0).delay(7) == 0.0  # JobReactor's specs: immediate retries


def test_exponential_waits_stay_inside_the_jitter_envelope() -> None:
    backoff = Backoff.exponential(base=1.0, factor=2.0, max_delay=30.0, jitter=0.1)
    rng = random.Random(1234)
    for k in range(1, 12):
        expected = min(30.0, 1.0 * 2.0 ** (k - 1))
        waits = [backoff.delay(k, rng) for _ in range(200)]
        assert all(expected * 0.9 <= w <= expected * 1.1 for w in waits), (k, waits)
        assert max(waits) - min(waits) > expected * 0.1  # the jitter is really there


def test_retry_instants_of_a_failing_job_follow_the_schedule() -> None:
    # Timestamps at which a job failing at once would be retried, from t = 0.
    backoff = Backoff.exponential(base=0.5, factor=3.0, max_delay=10.0, jitter=0.2)
    rng = random.Random(7)
    now, instants = 0.0, []
    for k in range(1, 6):
        now += backoff.delay(k, rng)
        instants.append(now)
    low = high = 0.0
    for k, instant in enumerate(instants, start=1):
        step = min(10.0, 0.5 * 3.0 ** (k - 1))
        low, high = low + step * 0.8, high + step * 1.2
        assert low <= instant <= high


def test_exponential_without_jitter_is_exact_and_capped() -> None:
    backoff = Backoff.exponential(base=2.0, factor=2.0, max_delay=100.0, jitter=0.0)
    assert [backoff.delay(k) for k in range(1, 8)] == [2, 4, 8, 16, 32, 64, 100]
    assert backoff.delay(100_000) == 100.0  # no OverflowError for absurd attempt numbers


def test_a_seeded_rng_reproduces_the_waits() -> None:
    backoff = Backoff.exponential()
    first = [backoff.delay(k, random.Random(3)) for k in range(1, 6)]
    assert first == [backoff.delay(k, random.Random(3)) for k in range(1, 6)]
    assert 0.9 <= backoff.delay(1) <= 1.1  # the shared generator when no rng is given


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Backoff.linear(-1), "multiplier must be a finite number >= 0"),
        (lambda: Backoff.linear("5"), "multiplier must be a number, not str"),  # type: ignore[arg-type]
        (lambda: Backoff.linear(True), "must be a number, not bool"),
        (lambda: Backoff.exponential(factor=0.5), "factor must be a finite number >= 1"),
        (lambda: Backoff.exponential(base=math.nan), "base must be a finite number"),
        (lambda: Backoff.exponential(max_delay=math.inf), "max_delay must be a finite number"),
        (lambda: Backoff.exponential(jitter=1.5), "jitter must be between 0 and 1"),
        (lambda: Backoff.exponential(jitter=-0.1), "jitter must be a finite number >= 0"),
        (lambda: Backoff("fibonacci"), "use Backoff.linear"),  # type: ignore[arg-type]
    ],
)
def test_bad_parameters_are_refused_with_the_name_of_the_parameter(
    make: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize("attempt", [0, -1, 1.5, True, "1"])
def test_delay_wants_an_attempt_number_from_one(attempt: object) -> None:
    with pytest.raises(ValueError, match="attempt must be an int >= 1"):
        Backoff.linear().delay(attempt)  # type: ignore[arg-type]


def test_wire_form_is_a_short_msgpack_list_that_round_trips() -> None:
    for backoff in (Backoff.linear(2.5), Backoff.exponential(1.0, 2.0, 300.0, 0.1)):
        wire = msgpack.unpackb(msgpack.packb(backoff.to_wire()))
        assert Backoff.from_wire(wire) == backoff
    assert Backoff.linear(2).to_wire() == ["linear", 2.0]
    assert Backoff.exponential().to_wire() == ["exponential", 1.0, 2.0, 300.0, 0.1]
    assert repr(Backoff.linear(2)) == "Backoff.linear(2.0)"


@pytest.mark.parametrize(
    "wire",
    [None, [], ["linear"], ["linear", -1], ["exponential", 1, 2, 3], ["cubic", 1], "linear"],
)
def test_a_malformed_wire_form_is_a_protocol_error(wire: object) -> None:
    with pytest.raises(ProtocolError, match="backoff"):
        Backoff.from_wire(wire)
