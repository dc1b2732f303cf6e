"""reactor.testing: the in-process cluster, eager mode and capture mode, also through JR.enqueue."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import reactor as JR
from reactor import JobFailed, RemoteError, job, job_callback, job_errback
from reactor.testing import CapturingDistributor, Cluster, EagerDistributor, registry_from

from .conftest import JOBS

ROOT = Path(__file__).parent.parent


@job("double", max_attempt=2)
def double(args: dict[str, Any]) -> None:
    args["doubled"] = args["n"] * 2


@job_callback("double", "note")
def double_note(args: dict[str, Any]) -> None:
    args["noted"] = True


@job("flaky", max_attempt=3)
def flaky(args: dict[str, Any]) -> None:
    args["tries"] = args.get("tries", 0) + 1
    raise ValueError(f"bad input {args['n']}")


@job_errback("flaky", "count")
def flaky_errback(args: dict[str, Any]) -> None:
    args["errback_ran"] = True


async def ping(args: dict[str, Any]) -> None:
    await asyncio.sleep(0)
    args["pong"] = True


def test_registry_from_decorated_and_plain_functions_keeps_callbacks_and_options() -> None:
    registry = registry_from([double, ping])
    assert registry.names() == ["double", "ping"]
    entry = registry.get("double")
    assert entry is not None and entry.callbacks == [double_note] and entry.max_attempt == 2
    assert registry_from({"other": double}).names() == ["other"]
    assert "chain" in registry_from(JOBS)
    with pytest.raises(TypeError, match="jobs="):
        registry_from(42)  # type: ignore[arg-type]


async def test_cluster_runs_jobs_from_functions_on_the_running_loop() -> None:
    async with Cluster(jobs=[double, ping], nodes=2) as cluster:
        assert [n.name for n in cluster.nodes] == ["node-1", "node-2"]
        results = await asyncio.wait_for(
            asyncio.gather(*(cluster.enqueue("double", {"n": i}) for i in range(10))), 10
        )
        assert [r["doubled"] for r in results] == [i * 2 for i in range(10)]
        assert all(r["noted"] for r in results)
        assert (await asyncio.wait_for(cluster.enqueue("ping", {}), 10))["pong"] is True


def test_cluster_on_its_own_thread_serves_the_facade() -> None:
    seen: list[dict[str, Any]] = []
    with Cluster(jobs=JOBS, facade=True) as cluster:
        handle = JR.enqueue("chain", {"x": 1}, on_success=seen.append)
        assert handle.result(timeout=10)["order"] == ["body", "first", "second"]
        assert cluster.run("chain", {})["same_dict"] is True
    assert seen and seen[0]["order"] == ["body", "first", "second"]
    with pytest.raises(JR.ReactorError, match="start_distributor"):
        JR.enqueue("chain", {})  # the facade's own (absent) distributor is back


def test_eager_runs_the_chain_inline_and_calls_feedback_before_returning() -> None:
    eager = EagerDistributor([double, flaky, ping])
    ok: list[dict[str, Any]] = []
    handle = eager.enqueue("double", {"n": 21}, on_success=ok.append)
    assert handle.done() and ok == [handle.result()] and ok[0]["doubled"] == 42
    assert ok[0]["noted"] is True
    assert eager.enqueue("ping", {}).result()["pong"] is True
    errors: list[dict[str, Any]] = []
    failed = eager.enqueue("flaky", {"n": 7}, on_error=errors.append)
    with pytest.raises(JobFailed) as info:
        failed.result()
    assert info.value.type_name == "ValueError" and "bad input 7" in info.value.message
    assert len(errors) == 1 and isinstance(errors[0]["error"], RemoteError)
    assert errors[0]["errback_ran"] is True and "tries" not in errors[0]
    with pytest.raises(JobFailed, match="NoSuchJob"):
        eager.enqueue("missing", {}).result()
    with pytest.raises(TypeError, match=r"args\['when'\]"):
        eager.enqueue("double", {"when": object()})


async def test_eager_runs_async_chains_even_inside_a_running_loop() -> None:
    eager = EagerDistributor({"ping": ping})
    with eager.routing_facade():
        handle = JR.enqueue("ping", {"n": 1})
    assert handle.done() and (await handle)["pong"] is True


def test_capture_records_without_running_and_asserts_what_was_enqueued() -> None:
    capture = CapturingDistributor()
    with capture.routing_facade():
        JR.enqueue("send_mail", {"to": "ada@example.com", "ids": (1, 2)}, after=30)
        JR.enqueue("send_mail", {"to": "bob@example.com"})
        handle = JR.enqueue("report", {})
        JR.enqueue("reminder", {}, run_at=time.time() + 600)
    assert not handle.done()
    capture.assert_enqueued("send_mail", count=2)
    [mail] = capture.assert_enqueued(
        "send_mail", args={"to": "ada@example.com", "ids": [1, 2]}, after_between=(29, 31)
    )
    assert mail.delay == 30
    capture.assert_enqueued("report", count=1, after_between=(0, 0))
    capture.assert_enqueued("reminder", count=1, after_between=(599, 601))
    capture.assert_enqueued("nothing_like_it", count=0)
    with pytest.raises(
        AssertionError, match=r"expected 1 job\(s\) 'send_mail'.*enqueued: send_mail"
    ):
        capture.assert_enqueued("send_mail", count=1)
    with pytest.raises(AssertionError, match="found 0"):
        capture.assert_enqueued("send_mail", after_between=(100, 200))
    handle.cancel()
    assert capture.enqueued("report")[0].cancelled


def test_pytest_fixtures_route_the_facade(reactor_capture: CapturingDistributor) -> None:
    JR.enqueue("anything", {"k": 1})
    reactor_capture.assert_enqueued("anything", args={"k": 1}, count=1)


def test_eager_applies_the_enqueue_max_attempt_and_timeout() -> None:
    eager = EagerDistributor([flaky, ping])
    errors: list[dict[str, Any]] = []
    eager.enqueue("flaky", {"n": 1}, max_attempt=1, on_error=errors.append)
    assert len(errors) == 1
    capture = CapturingDistributor()
    capture.enqueue("ping", {}, priority=5, timeout=2.0, max_attempt=4)
    [job] = capture.enqueued("ping")
    assert (job.priority, job.timeout, job.max_attempt) == (5, 2.0, 4)


@pytest.mark.parametrize("on_loop", [False, True])
def test_a_cluster_left_with_a_deferred_job_tears_down_at_once_and_warns(
    on_loop: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22: an ``after=60`` job left behind cost 10 s (drain_timeout) and an ERROR."""
    caplog.set_level(logging.INFO)
    cluster = Cluster(jobs=[double])

    async def leave_one_async() -> float:
        async with cluster:
            cluster.enqueue("double", {"n": 1}, after=60)
            assert (await cluster.enqueue("double", {"n": 2}))["doubled"] == 4
            began = time.monotonic()
        return time.monotonic() - began

    if on_loop:
        took = asyncio.run(leave_one_async())
    else:
        with cluster:  # what the reactor_cluster fixture does
            cluster.enqueue("double", {"n": 1}, after=60)
            assert cluster.run("double", {"n": 2})["doubled"] == 4
            began = time.monotonic()
        took = time.monotonic() - began
    assert took < 1.0, f"teardown took {took:.2f}s"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "1 job(s) the test left unfinished" in warning.getMessage()
    assert "double x1" in warning.getMessage()


@pytest.mark.parametrize("where", ["root", "inside"])
def test_the_example_application_tests_pass_with_the_installed_plugin(where: str) -> None:
    """examples/testing_app uses the pytest fixtures the package registers (entry point), and
    runs with what its README lists: pytest and pytest-asyncio, not pytest-timeout (issue 22:
    ``INTERNALERROR ... Unknown config option: timeout``), from the root or from inside it."""
    example = ROOT / "examples" / "testing_app"
    assert "pytest-asyncio" in (example / "README.md").read_text()
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:timeout"]
    out = subprocess.run(
        argv + (["examples/testing_app"] if where == "root" else []),
        cwd=ROOT if where == "root" else example,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 passed" in out.stdout
