"""The chain runner on its own: no sockets, no storage."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from reactor import CancelJob, TimeLimitExceeded
from reactor.jobs.chain import run_async, run_sync, run_sync_limited
from reactor.jobs.outcome import Outcome
from reactor.jobs.registry import JobRegistry


def fresh() -> dict[str, Any]:
    return {"x": 1}


def test_body_then_callbacks_in_order_on_one_dict() -> None:
    reg = JobRegistry()
    reg.define("j", lambda a: a.setdefault("order", []).append("body"))
    reg.add_callback("j", lambda a: a["order"].append("cb1"))
    reg.add_callback("j", lambda a: a["order"].append("cb2"))
    entry = reg.get("j")
    assert entry is not None and not entry.is_async
    args = fresh()
    attempt = run_sync(entry, args, fresh)
    assert attempt.outcome is Outcome.DONE
    assert attempt.args is args and args["order"] == ["body", "cb1", "cb2"]


def test_exception_skips_later_callbacks_and_errbacks_get_fresh_args() -> None:
    reg = JobRegistry()
    seen: list[dict[str, Any]] = []

    def body(a: dict[str, Any]) -> None:
        a["added"] = True

    def boom(a: dict[str, Any]) -> None:
        raise ValueError("bad")

    reg.define("j", body)
    reg.add_callback("j", boom)
    reg.add_callback("j", lambda a: a.__setitem__("never", True))
    reg.add_errback("j", lambda a: seen.append(dict(a)))
    reg.add_errback("j", lambda a: a.__setitem__("eb2", True))
    entry = reg.get("j")
    assert entry is not None
    attempt = run_sync(entry, fresh(), fresh)
    assert attempt.outcome is Outcome.FAILED
    assert isinstance(attempt.error, ValueError)
    assert "added" not in seen[0] and isinstance(seen[0]["error"], ValueError)
    assert attempt.args["eb2"] is True and "never" not in attempt.args


def test_cancel_job_in_body_and_in_errback() -> None:
    reg = JobRegistry()

    def cancel(a: dict[str, Any]) -> None:
        raise CancelJob

    reg.define("c", cancel)
    entry = reg.get("c")
    assert entry is not None
    assert run_sync(entry, fresh(), fresh).outcome is Outcome.CANCELLED

    def fail(a: dict[str, Any]) -> None:
        raise KeyError("k")

    reg.define("f", fail)
    reg.add_errback("f", cancel)
    entry = reg.get("f")
    assert entry is not None
    assert run_sync(entry, fresh(), fresh).outcome is Outcome.FAILED_CANCELLED


def test_an_errback_that_raises_is_recorded_and_stops_later_errbacks() -> None:
    reg = JobRegistry()

    def fail(a: dict[str, Any]) -> None:
        raise KeyError("k")

    def eb_raises(a: dict[str, Any]) -> None:
        raise RuntimeError("errback broke")

    reg.define("f", fail)
    reg.add_errback("f", eb_raises)
    reg.add_errback("f", lambda a: a.__setitem__("later", True))
    entry = reg.get("f")
    assert entry is not None
    attempt = run_sync(entry, fresh(), fresh)
    assert attempt.outcome is Outcome.FAILED
    assert isinstance(attempt.args["errback_error"], RuntimeError)
    assert "later" not in attempt.args


def test_keyboard_interrupt_is_not_swallowed() -> None:
    reg = JobRegistry()

    def interrupt(a: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    reg.define("k", interrupt)
    entry = reg.get("k")
    assert entry is not None
    with pytest.raises(KeyboardInterrupt):
        run_sync(entry, fresh(), fresh)


async def test_async_chain_mixes_async_and_sync_steps() -> None:
    reg = JobRegistry()

    async def body(a: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        a["order"] = ["body"]

    reg.define("a", body)
    reg.add_callback("a", lambda a: a["order"].append("sync cb"))
    entry = reg.get("a")
    assert entry is not None and entry.is_async
    attempt = await run_async(entry, fresh(), fresh)
    assert attempt.outcome is Outcome.DONE and attempt.args["order"] == ["body", "sync cb"]


async def test_deferred_body_runs_in_a_worker_thread_callbacks_on_the_loop() -> None:
    reg = JobRegistry()
    loop_thread = threading.current_thread()
    reg.define("d", lambda a: a.__setitem__("body_thread", threading.current_thread()))
    reg.add_callback("d", lambda a: a.__setitem__("cb_thread", threading.current_thread()))
    entry = reg.get("d")
    assert entry is not None
    with ThreadPoolExecutor(1) as pool:
        attempt = await run_async(entry, fresh(), fresh, executor=pool)
    assert attempt.args["body_thread"] is not loop_thread
    assert attempt.args["cb_thread"] is loop_thread


def _limited(body: Any) -> tuple[JobRegistry, list[str]]:
    reg = JobRegistry()
    seen: list[str] = []
    reg.define("j", body)
    reg.add_callback("j", lambda a: seen.append("callback"))
    reg.add_errback("j", lambda a: seen.append(f"errback {type(a['error']).__name__}"))
    return reg, seen


def test_a_def_chain_fails_when_a_step_returns_past_its_limit() -> None:
    reg, seen = _limited(lambda a: time.sleep(0.05))
    entry = reg.get("j")
    assert entry is not None
    attempt = run_sync_limited(entry, fresh(), fresh, 0.01)
    assert attempt.outcome is Outcome.FAILED
    assert isinstance(attempt.error, TimeLimitExceeded) and isinstance(attempt.error, TimeoutError)
    assert "past its 0.01 s timeout" in str(attempt.error)
    assert seen == ["errback TimeLimitExceeded"]  # the callback did not run
    assert run_sync_limited(entry, fresh(), fresh, 5.0).outcome is Outcome.DONE


async def test_an_async_chain_is_cancelled_at_its_limit() -> None:
    cancelled = asyncio.Event()

    async def body(a: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    reg, seen = _limited(body)
    entry = reg.get("j")
    assert entry is not None
    began = time.monotonic()
    attempt = await run_async(entry, fresh(), fresh, timeout=0.05)
    assert time.monotonic() - began < 1.0
    assert attempt.outcome is Outcome.FAILED and isinstance(attempt.error, TimeLimitExceeded)
    assert cancelled.is_set() and seen == ["errback TimeLimitExceeded"]


async def test_a_jobs_own_timeout_error_is_not_taken_for_the_limit() -> None:
    async def body(a: dict[str, Any]) -> None:
        raise TimeoutError("the remote API timed out")

    reg, seen = _limited(body)
    entry = reg.get("j")
    assert entry is not None
    attempt = await run_async(entry, fresh(), fresh, timeout=5.0)
    assert type(attempt.error) is TimeoutError and seen == ["errback TimeoutError"]


async def test_a_deferred_body_past_its_limit_is_abandoned_to_its_thread() -> None:
    release = threading.Event()
    finished = threading.Event()

    def body(a: dict[str, Any]) -> None:
        release.wait(10)
        a["late"] = True
        finished.set()

    reg, seen = _limited(body)
    entry = reg.get("j")
    assert entry is not None
    with ThreadPoolExecutor(max_workers=1) as pool:
        attempt = await run_async(entry, fresh(), fresh, executor=pool, timeout=0.05)
        assert attempt.outcome is Outcome.FAILED and isinstance(attempt.error, TimeLimitExceeded)
        assert "late" not in attempt.args
        # the pool's one thread is free: the abandoned body has a thread of its own
        assert pool.submit(lambda: "free").result(timeout=2) == "free"
    release.set()
    assert finished.wait(5)
    await asyncio.sleep(0.01)  # its result reaches the loop and is ignored
    assert seen == ["errback TimeLimitExceeded"]
