"""Issue 13: per-job time limits on real node processes (async, deferred and plain def jobs)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reactor import Distributor, JobFailed
from reactor.testing import async_wait_until

from .conftest import NodeFactory, Recorder, lines, wait_for_node


async def _node(d: Distributor, start_node: NodeFactory, name: str = "w1", **kw: object) -> object:
    settings = {"retry_multiplier": 0, **kw.pop("settings", {})}  # type: ignore[dict-item]
    proc = start_node(name, [d.address], settings=settings, **kw)
    await wait_for_node(d, name, proc=proc)
    return proc


async def test_a_timed_out_async_job_is_cancelled_at_its_limit_and_retried(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    await _node(distributor, start_node)
    path = tmp_path / "runs.txt"
    errors = Recorder()
    handle = distributor.enqueue(
        "limit_async", {"path": str(path)}, timeout=0.5, max_attempt=2, on_error=errors
    )
    with pytest.raises(JobFailed) as failed:
        await asyncio.wait_for(handle, 15)
    assert failed.value.type_name == "TimeLimitExceeded"
    assert "ran past its 0.5 s timeout" in failed.value.message
    notes = lines(path)
    starts = [float(n.split()[1]) for n in notes if n.startswith("start")]
    errbacks = [n.split() for n in notes if n.startswith("errback")]
    assert len(starts) == 2, notes  # max_attempt=2 at enqueue: retried once
    assert [e[1] for e in errbacks] == ["TimeLimitExceeded"] * 2, notes
    assert "finished" not in notes  # the coroutine was cancelled, not left to run
    for start, errback in zip(starts, errbacks, strict=True):
        assert 0.45 <= float(errback[2]) - start < 1.0  # failed within limit + 0.5 s
    assert len(errors.calls) == 1
    assert errors.args[0]["error"].type_name == "TimeLimitExceeded"


async def test_a_timed_out_deferred_job_releases_its_slot(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    # One slot and one worker thread: the next jobs can only run if the stuck one let go.
    await _node(distributor, start_node, capacity=1, settings={"defer_threads": 1})
    path = tmp_path / "runs.txt"
    errors, late = Recorder(), Recorder()
    stuck = distributor.enqueue(
        "limit_defer",
        {"path": str(path), "seconds": 3.0},
        defer=True,
        timeout=0.3,
        max_attempt=1,
        on_error=errors,
        on_success=late,
    )
    await async_wait_until(lambda: lines(path), 10)  # it runs and holds the one slot
    began = time.monotonic()
    after_async = distributor.enqueue("async_sleep", {"seconds": 0.0})
    after_defer = distributor.enqueue("record", {}, defer=True)
    with pytest.raises(JobFailed, match="TimeLimitExceeded"):
        await asyncio.wait_for(stuck, 10)
    await asyncio.wait_for(after_async, 10)
    await asyncio.wait_for(after_defer, 10)
    assert time.monotonic() - began < 2.5, "the next jobs waited for the abandoned body"
    assert "finished" not in lines(path)
    # The abandoned body ends later; its result is ignored (no second outcome).
    await async_wait_until(lambda: "finished" in lines(path), 10)
    await asyncio.sleep(0.3)  # the assertion's window: an ignored result gives no feedback
    assert len(errors.calls) == 1 and late.calls == []
    assert "late_change" not in errors.args[0]


async def test_a_def_job_over_its_limit_fails_and_is_named_in_a_warning(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    proc = await _node(distributor, start_node, settings={"slow_job_warning": 60})
    path = tmp_path / "runs.txt"
    handle = distributor.enqueue(
        "limit_def", {"path": str(path), "seconds": 1.2}, timeout=0.3, max_attempt=1
    )
    with pytest.raises(JobFailed) as failed:
        await asyncio.wait_for(handle, 15)
    assert failed.value.type_name == "TimeLimitExceeded"
    assert lines(path) and lines(path)[0].startswith("returned")  # it could not be interrupted
    output = proc.output()  # type: ignore[attr-defined]
    warning = [line for line in output.splitlines() if "past its 0.3s timeout" in line]
    assert warning, output[-2000:]
    assert handle.id in warning[0] and "'limit_def'" in warning[0]
    # within its limit, the same job succeeds
    ok = distributor.enqueue("limit_def", {"path": str(path), "seconds": 0.0}, timeout=5)
    await asyncio.wait_for(ok, 10)


async def test_the_job_decorator_limit_applies_and_enqueue_overrides_it(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "timed.py").write_text(
        "import asyncio\n"
        "from reactor import job\n"
        "@job('timed', timeout=0.3, max_attempt=1)\n"
        "async def timed(args):\n"
        "    await asyncio.sleep(args['seconds'])\n"
    )
    await _node(distributor, start_node, jobs=jobs)
    with pytest.raises(JobFailed, match="TimeLimitExceeded"):
        await asyncio.wait_for(distributor.enqueue("timed", {"seconds": 2.0}), 10)
    await asyncio.wait_for(distributor.enqueue("timed", {"seconds": 0.6}, timeout=5.0), 10)
