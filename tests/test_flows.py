"""Workflows on real node processes over real ZeroMQ: each step an ordinary job, the flow
driven by the distributor in this (the application's) process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reactor import (
    Distributor,
    FlowError,
    JobCancelledError,
    JobFailed,
    chain,
    chord,
    group,
    step,
)
from reactor.testing.support import async_wait_until

from .conftest import NodeFactory, Recorder, lines, wait_for_node


@pytest.fixture
async def node(distributor: Distributor, start_node: NodeFactory) -> None:
    proc = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=proc)


def statuses(handle: Any) -> list[str]:
    return [status for _, _, status in handle.steps]


async def test_a_three_step_chain_passes_args_along(distributor: Distributor, node: None) -> None:
    done = Recorder()
    flow = chain(step("flow_add", {"n": 1}), step("flow_add", {"inc": 10}), step("flow_add"))
    handle = distributor.enqueue_flow(flow, on_success=done)
    result = await handle
    # 1+1, then 2+10 (its own inc), then 12+10 (inc came along in the previous final args).
    assert result["n"] == 22 and result["inc"] == 10 and result["pid"]
    assert done.args == [result]
    assert statuses(handle) == ["succeeded"] * 3
    assert len({job_id for job_id, _, _ in handle.steps}) == 3  # three ordinary jobs


async def test_a_group_of_100_and_a_chord_over_it(distributor: Distributor, node: None) -> None:
    members = [step("flow_add", {"n": i}) for i in range(100)]
    listed = await distributor.enqueue_flow(group(members))
    assert [r["n"] for r in listed] == list(range(1, 101))  # complete and in order
    result = await distributor.enqueue_flow(chord(group(members), step("flow_total")))
    assert [r["n"] for r in result["results"]] == list(range(1, 101))
    assert result["total"] == sum(range(1, 101))


async def test_a_failing_middle_step_fails_the_flow_once_and_stops_it(
    distributor: Distributor, node: None, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    errors, successes = Recorder(), Recorder()
    flow = chain(
        step("flow_add", {"n": 1, "path": str(notes), "tag": "first"}),
        step("flow_fail", {"tag": "middle"}),
        step("flow_add", {"tag": "last"}),
    )
    handle = distributor.enqueue_flow(flow, on_success=successes, on_error=errors)
    with pytest.raises(JobFailed, match="step failed at n=2") as caught:
        await handle
    assert caught.value.type_name == "ValueError"
    assert statuses(handle) == ["succeeded", "failed", "skipped"]
    assert handle.steps[2][0] is None  # never enqueued
    # A plain job through the same node after the failure: the last step ran not before it.
    await distributor.enqueue("flow_add", {"path": str(notes), "tag": "sentinel"})
    assert lines(notes) == ["add first", "fail middle", "add sentinel"]
    assert len(errors.args) == 1 and not successes.args
    assert str(errors.args[0]["error"]) == "ValueError: step failed at n=2"
    assert errors.args[0]["n"] == 2  # the failed step's final args
    assert distributor.metrics.flows["failed"] == 1


async def test_a_chord_with_one_failing_member_never_calls_back(
    distributor: Distributor, node: None, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    members = [step("flow_add", {"n": i, "path": str(notes), "tag": str(i)}) for i in range(5)]
    members[2] = step("flow_fail", {"path": str(notes), "tag": "2"})
    errors = Recorder()
    handle = distributor.enqueue_flow(chord(group(members), step("flow_total")), on_error=errors)
    with pytest.raises(JobFailed, match="ValueError"):
        await handle
    # The group's other members run to their end; the callback never starts.
    await async_wait_until(
        lambda: statuses(handle)[:5] == ["succeeded"] * 2 + ["failed"] + ["succeeded"] * 2,
        15.0,
        message=f"members did not all end: {handle.steps}",
    )
    assert statuses(handle)[5] == "skipped"
    assert "total" not in lines(notes) and len(errors.args) == 1


async def test_cancel_of_a_running_flow(
    distributor: Distributor, node: None, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    flow = chain(
        step("flow_wait", {"seconds": 2.0, "path": str(notes)}), step("flow_add", {"tag": "after"})
    )
    handle = distributor.enqueue_flow(flow)
    await async_wait_until(lambda: "wait started" in lines(notes), 15.0)
    handle.cancel()
    with pytest.raises(JobCancelledError, match="cancelled"):
        await handle
    assert statuses(handle)[1] == "skipped"
    # The running step ends (cancelled, or finished if the node could not stop it) ...
    await async_wait_until(lambda: statuses(handle)[0] != "enqueued", 15.0)
    assert statuses(handle)[0] in ("cancelled", "succeeded")
    # ... and the next step never starts.
    await distributor.enqueue("flow_add", {"path": str(notes), "tag": "sentinel"})
    assert "add after" not in lines(notes) and "add sentinel" in lines(notes)
    assert distributor.metrics.flows["cancelled"] == 1


async def test_nesting_a_group_of_chains_inside_a_chain(
    distributor: Distributor, node: None
) -> None:
    flow = chain(
        step("flow_add", {"n": 0}),
        group(chain(step("flow_add"), step("flow_add", {"inc": 100})), step("flow_add")),
        step("flow_total"),
    )
    result = await distributor.enqueue_flow(flow)
    assert [r["n"] for r in result["results"]] == [102, 2]
    assert result["total"] == 104


async def test_bad_input_is_a_one_line_error(distributor: Distributor) -> None:
    for bad, message in (
        (lambda: distributor.enqueue_flow([step("flow_add")]), "not list"),  # type: ignore[arg-type]
        (lambda: distributor.enqueue_flow(group()), "an empty group"),
        (lambda: distributor.enqueue_flow(chain(step("flow_add"), 42)), "part 1 of a chain"),
    ):
        with pytest.raises(FlowError, match=message) as caught:
            bad()
        assert "\n" not in str(caught.value)
