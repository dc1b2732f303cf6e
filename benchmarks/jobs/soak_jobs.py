"""Jobs of the soak benchmark (``python -m benchmarks.soak``): short work, a retry, a failure and
a periodic tick, so a long run exercises every path that keeps state per job."""

from __future__ import annotations

import time
from typing import Any

from reactor import job

#: Keys of the soak_flaky jobs whose first attempt failed in this process.
_failed_once: set[int] = set()


@job("soak_work")
def soak_work(args: dict[str, Any]) -> None:
    """A few milliseconds of blocking work."""
    time.sleep(args.get("seconds", 0.002))
    args["done"] = True


@job("soak_flaky", max_attempt=3)
def soak_flaky(args: dict[str, Any]) -> None:
    """Fails its first attempt and succeeds on the retry."""
    key = args["k"]
    if key not in _failed_once:
        _failed_once.add(key)
        raise RuntimeError("first attempts of soak_flaky fail on purpose")
    _failed_once.discard(key)
    args["done"] = True


@job("soak_fail", max_attempt=2)
def soak_fail(args: dict[str, Any]) -> None:
    """Always fails: its record is kept or removed by the retention settings."""
    raise ValueError("soak_fail always fails")


@job("soak_tick")
def soak_tick(args: dict[str, Any]) -> None:
    """A periodic job's run."""
    args["ticks"] = args.get("ticks", 0) + 1
