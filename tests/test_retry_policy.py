"""Issue 13: per-job retry policies (max_attempt, backoff, give_up_on), decided and on nodes."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest

from reactor import Backoff, Distributor, JobFailed
from reactor.core.lifecycle import Next, RetryPolicy, after_attempt
from reactor.jobs.outcome import Outcome
from reactor.jobs.record import JobRecord
from reactor.jobs.registry import JobRegistry

from .conftest import NodeFactory, Recorder, lines, wait_for_node


def _failed_after(
    job: JobRecord, policy: RetryPolicy, error: Exception, rng: random.Random | None = None
) -> tuple[Next, float]:
    return after_attempt(job, Outcome.FAILED, policy, 1_800_000_000.0, error, rng)


def test_policy_precedence_is_enqueue_then_job_then_node() -> None:
    registry = JobRegistry()
    registry.define("plain", lambda args: None)
    registry.define("strict", lambda args: None, max_attempt=2, backoff=Backoff.exponential())
    policies = RetryPolicy.for_registry(registry, max_attempt=10, retry_multiplier=5)
    assert policies["plain"] == RetryPolicy(10, Backoff.linear(5))
    assert policies["strict"].max_attempt == 2 and policies["strict"].backoff.kind == "exponential"
    job = JobRecord("j", "strict", b"\x80", attempt=2)
    assert _failed_after(job, policies["strict"], RuntimeError())[0] is Next.FAILED
    job.max_attempt = 3  # an enqueue's max_attempt wins over @job's
    assert _failed_after(job, policies["strict"], RuntimeError())[0] is Next.RETRY
    job.attempt = 3
    assert _failed_after(job, policies["strict"], RuntimeError())[0] is Next.FAILED


def test_the_default_is_jobreactors_linear_rule() -> None:
    policy = RetryPolicy.of(None, max_attempt=10, retry_multiplier=5)
    waits = []
    for attempt in range(1, 10):
        nxt, delay = _failed_after(JobRecord("j", "n", b"\x80", attempt=attempt), policy, OSError())
        assert nxt is Next.RETRY
        waits.append(delay)
    assert waits == [5.0 * k for k in range(1, 10)]
    assert sum(waits) == 225.0  # 10 attempts take 225 s of waits: hence the README's warning


def test_exponential_waits_stay_inside_the_jitter_envelope() -> None:
    backoff = Backoff.exponential(base=1.0, factor=2.0, max_delay=30.0, jitter=0.2)
    policy = RetryPolicy(50, backoff)
    rng = random.Random(7)
    seen = []
    for _ in range(200):
        for attempt in range(1, 8):
            job = JobRecord("j", "n", b"\x80", attempt=attempt)
            _, delay = _failed_after(job, policy, RuntimeError(), rng)
            nominal = min(30.0, 2.0 ** (attempt - 1))
            assert nominal * 0.8 <= delay <= nominal * 1.2
            seen.append(delay / nominal)
    assert min(seen) < 0.85 and max(seen) > 1.15  # the jitter does spread them


def test_give_up_on_and_retry_on_narrow_what_is_retried() -> None:
    policy = RetryPolicy(5, Backoff.linear(0), retry_on=(OSError,), give_up_on=(FileNotFoundError,))
    job = JobRecord("j", "n", b"\x80", attempt=1)
    assert _failed_after(job, policy, ConnectionError())[0] is Next.RETRY  # an OSError
    assert _failed_after(job, policy, FileNotFoundError())[0] is Next.FAILED  # given up on
    assert _failed_after(job, policy, KeyError())[0] is Next.FAILED  # not in retry_on
    assert _failed_after(job, RetryPolicy(5, Backoff.linear(0)), KeyError())[0] is Next.RETRY


def test_bad_exception_options_fail_at_decoration() -> None:
    from reactor import ConfigError, job

    with pytest.raises(ConfigError, match="give_up_on must be an exception class"):
        job("x", give_up_on="ValueError")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retry_on must be an exception class"):
        job("x", retry_on=(ValueError, 3))  # type: ignore[arg-type]


# -- on real nodes ---------------------------------------------------------------------------


@pytest.fixture
async def node_up(distributor: Distributor, start_node: NodeFactory) -> None:
    proc = start_node("w1", [distributor.address], settings={"max_attempt": 6})
    await wait_for_node(distributor, "w1", proc=proc)


async def test_exponential_backoff_timestamps_on_a_node(
    distributor: Distributor, node_up: None, tmp_path: Path
) -> None:
    path = tmp_path / "attempts.txt"
    errors = Recorder()
    handle = distributor.enqueue("fail_exponential", {"path": str(path)}, on_error=errors)
    with pytest.raises(JobFailed, match="always fails"):
        await asyncio.wait_for(handle, 20)
    stamps = [float(line.split()[1]) for line in lines(path)]
    assert len(stamps) == 4  # @job(max_attempt=4) beats the node's 6
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    for gap, nominal in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        # jitter 0.1: [0.9, 1.1] x nominal; the upper side allows for a loaded machine
        assert nominal * 0.9 - 0.005 <= gap <= nominal * 1.1 + 0.25, gaps
    assert len(errors.calls) == 1


async def test_max_attempt_on_the_job_and_at_enqueue(
    distributor: Distributor, node_up: None, tmp_path: Path
) -> None:
    paths = [tmp_path / f"{i}.txt" for i in range(4)]
    handles = [
        distributor.enqueue("fail_twice", {"path": str(paths[0])}),  # @job(max_attempt=2)
        distributor.enqueue("fail_twice", {"path": str(paths[1])}, max_attempt=3),
        distributor.enqueue("fail_twice", {"path": str(paths[2])}, max_attempt=1),
        distributor.enqueue("give_up", {"path": str(paths[3])}),  # give_up_on=ValueError
    ]
    for handle in handles:
        with pytest.raises(JobFailed):
            await asyncio.wait_for(handle, 15)
    assert [len(lines(p)) for p in paths] == [2, 3, 1, 1]
