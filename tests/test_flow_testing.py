"""Workflows in reactor.testing: EagerDistributor and Cluster run them, CapturingDistributor
records them; all three through JR.enqueue_flow as well."""

from __future__ import annotations

from typing import Any

import pytest

import reactor as JR
from reactor import (
    FlowError,
    JobCancelledError,
    JobFailed,
    JobTimeoutError,
    chain,
    chord,
    group,
    job,
    step,
)
from reactor.testing import CapturingDistributor, Cluster, EagerDistributor


@job("add")
def add(args: dict[str, Any]) -> None:
    args["n"] = args.get("n", 0) + args.get("inc", 1)


@job("total")
def total(args: dict[str, Any]) -> None:
    args["total"] = sum(r["n"] for r in args["results"])


@job("boom", max_attempt=1)
def boom(args: dict[str, Any]) -> None:
    raise RuntimeError(f"boom at {args.get('n')}")


JOBS = [add, total, boom]


def test_eager_runs_a_chain_inline_passing_args_along() -> None:
    eager = EagerDistributor(JOBS)
    done: list[Any] = []
    handle = eager.enqueue_flow(
        chain(step("add", {"n": 1}), step("add", {"inc": 10}), step("add")), on_success=done.append
    )
    assert handle.done()  # eager: finished before enqueue_flow returned
    # 1+1, then 2+10 (its own inc), then 12+10 (inc came along in the previous final args)
    assert handle.result(timeout=1) == {"n": 22, "inc": 10}
    assert done == [{"n": 22, "inc": 10}]
    assert [status for _, _, status in handle.steps] == ["succeeded"] * 3


def test_eager_runs_a_long_chain_without_recursing() -> None:
    handle = EagerDistributor(JOBS).enqueue_flow(chain(step("add") for _ in range(2000)))
    assert handle.result(timeout=1)["n"] == 2000


def test_eager_chord_and_a_failing_step() -> None:
    eager = EagerDistributor(JOBS)
    flow = chord(group(step("add", {"n": i}) for i in range(10)), step("total"))
    assert eager.enqueue_flow(flow).result(timeout=1)["total"] == sum(range(1, 11))
    errors: list[dict[str, Any]] = []
    failing = eager.enqueue_flow(
        chain(step("add", {"n": 1}), step("boom"), step("add")), on_error=errors.append
    )
    with pytest.raises(JobFailed, match="boom at 2"):
        failing.result(timeout=1)
    assert len(errors) == 1 and str(errors[0]["error"]) == "RuntimeError: boom at 2"
    assert [status for _, _, status in failing.steps] == ["succeeded", "failed", "skipped"]


def test_capture_records_the_flow_and_its_first_steps_only() -> None:
    capture = CapturingDistributor()
    handle = capture.enqueue_flow(chain(group(step("a"), step("b", {"k": 1})), step("c")))
    assert [f.id for f in capture.flows] == [handle.id]
    capture.assert_enqueued("a", count=1)
    capture.assert_enqueued("b", args={"k": 1}, count=1)
    capture.assert_enqueued("c", count=0)
    assert not handle.done()
    with pytest.raises(JobTimeoutError, match=r"did not finish within 0.01s \(0 of 3 steps ended"):
        handle.result(timeout=0.01)
    handle.cancel()
    assert all(j.cancelled for j in capture.jobs)
    with pytest.raises(JobCancelledError):
        handle.result(timeout=1)
    with pytest.raises(FlowError, match="not list"):
        capture.enqueue_flow([step("a")])  # type: ignore[arg-type]


def test_the_facade_routes_enqueue_flow_to_a_test_distributor() -> None:
    eager = EagerDistributor(JOBS)
    with eager.routing_facade():
        assert JR.enqueue_flow(step("add", {"n": 4})).result(timeout=1) == {"n": 5}


async def test_cluster_runs_a_chord_of_100_on_its_nodes() -> None:
    async with Cluster(jobs=JOBS, nodes=2) as cluster:
        flow = chord(group(step("add", {"n": i}) for i in range(100)), step("total"))
        result = await cluster.distributor.enqueue_flow(flow)
        assert [r["n"] for r in result["results"]] == list(range(1, 101))
        assert result["total"] == sum(range(1, 101))


def test_cluster_on_its_own_thread_serves_enqueue_flow_through_the_facade() -> None:
    with Cluster(jobs=JOBS, facade=True):
        handle = JR.enqueue_flow(chain(step("add", {"n": 1}), step("add")))
        assert handle.result(timeout=10) == {"n": 3}
