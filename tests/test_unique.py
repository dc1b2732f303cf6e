"""Unique jobs within one distributor: threads racing on one key, the window, the checks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import reactor as JR
from reactor.distributor.handle import JobHandle
from reactor.distributor.unique import UniqueKeys
from reactor.testing import CapturingDistributor, Cluster

RUNS: list[str] = []


def charge(args: dict[str, Any]) -> None:
    RUNS.append(args["invoice"])
    args["charged"] = True


async def test_one_key_from_eight_threads_makes_one_job_whose_outcome_every_handle_sees() -> None:
    RUNS.clear()
    async with Cluster(jobs=[charge]) as cluster:
        start = threading.Barrier(4)

        def enqueue_many() -> list[JobHandle]:
            start.wait()
            return [
                cluster.enqueue("charge", {"invoice": 42}, unique_key="invoice:42", unique_for=60.0)
                for _ in range(25)
            ]

        per_thread = await asyncio.gather(*(asyncio.to_thread(enqueue_many) for _ in range(4)))
        handles = [h for hs in per_thread for h in hs]
        assert len({h.id for h in handles}) == 1
        results = await asyncio.wait_for(asyncio.gather(*handles), 10)
        assert all(r["charged"] for r in results)
        other = await asyncio.wait_for(
            cluster.enqueue("charge", {"invoice": 7}, unique_key="invoice:7", unique_for=60.0), 10
        )
        assert other["charged"] is True
        await cluster.until_idle()
    assert RUNS == [42, 7]


def test_the_window_ends_after_unique_for_seconds_on_the_monotonic_clock() -> None:
    now = [100.0]
    keys = UniqueKeys(clock=lambda: now[0])
    capture = CapturingDistributor()
    first = JobHandle("a", "job", capture, threading.Lock())
    second = JobHandle("b", "job", capture, threading.Lock())
    assert keys.claim("k", 5.0, first, lambda i: first) is first
    now[0] = 104.9
    assert keys.claim("k", 5.0, second, lambda i: second) is first
    now[0] = 105.0
    assert keys.claim("k", 5.0, second, lambda i: second) is second
    assert keys.claim("other", 1.0, first, lambda i: first) is first


def test_capture_and_the_facade_honour_unique_keys_and_check_them() -> None:
    capture = CapturingDistributor()
    with capture.routing_facade():
        a = JR.enqueue("mail", {"to": 1}, unique_key="welcome:1", unique_for=30)
        b = JR.enqueue("mail", {"to": 1}, unique_key="welcome:1", unique_for=30)
        c = JR.enqueue("mail", {"to": 2}, unique_key="welcome:2", unique_for=30)
    assert a is b and c is not a
    capture.assert_enqueued("mail", args={"to": 1}, count=1)
    with pytest.raises(ValueError, match="needs unique_for"):
        capture.enqueue("mail", {}, unique_key="k")
    with pytest.raises(ValueError, match="unique_for= must be a finite number"):
        capture.enqueue("mail", {}, unique_key="k", unique_for=0)
    with pytest.raises(TypeError, match="unique_key= must be a non-empty string"):
        capture.enqueue("mail", {}, unique_key="", unique_for=1)
