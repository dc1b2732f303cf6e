"""Wall-clock jumps of ±1 h on a real node process under libfaketime (DESIGN §3 "Time").

The node runs with Debian's ``libfaketime`` preloaded, its wall clock read from a timestamp file
the test rewrites mid-run (``FAKETIME_NO_CACHE``), its monotonic clock left alone. ``after=``
and ``period=`` are durations and must not move; a ``run_at=`` instant follows the node's wall
clock, and a jump must not delay it by more than about a second. Times are taken on the test's
own (real) clock when each feedback arrives.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from reactor import Distributor
from reactor.testing import async_wait_until

from ..conftest import NodeFactory, Recorder, wait_for_node

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
HOUR = 3600.0


def _faketime_env(offset_file: Path) -> dict[str, str]:
    """Preload libfaketime with a wall-clock offset read from ``offset_file`` at every call."""
    if not LIBFAKETIME.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{LIBFAKETIME} is missing (apt-get install faketime); CI=true needs it")
        pytest.skip(f"{LIBFAKETIME} is missing (apt-get install faketime)")
    offset_file.write_text("+0\n")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


async def _node(d: Distributor, start_node: NodeFactory, offset_file: Path) -> None:
    proc = start_node("clocked", [d.address], env=_faketime_env(offset_file))
    await wait_for_node(d, "clocked", proc=proc)


def _jump(offset_file: Path, seconds: float) -> float:
    """Set the node's wall clock ``seconds`` off the real one; returns when (real time)."""
    offset_file.write_text(f"{seconds:+.0f}\n")
    return time.time()


def _at(recorder: Recorder) -> float:
    return recorder.calls[0][0]


class _Timed:
    """An ``after=4`` job, a ``period=2`` job and a ``run_at=`` job enqueued together, with the
    real time each of their feedbacks arrived."""

    def __init__(self, d: Distributor, run_at_from_now: float) -> None:
        self.after, self.at, self.every = Recorder(), Recorder(), Recorder()
        self.began = time.time()
        d.enqueue("record", {}, after=4, on_success=self.after)
        every = self.every
        self.periodic = d.enqueue("periodic", {"path": "/dev/null"}, period=2, on_success=every)
        d.enqueue("record", {}, run_at=self.began + run_at_from_now, on_success=self.at)

    def check_durations(self) -> None:
        """``after=4`` fired 4 s after enqueue and ``period=2`` ran every 2 s, within 1 s."""
        after = _at(self.after) - self.began
        assert abs(after - 4) < 1.0, f"after=4 fired at +{after:.2f}s"
        gaps = [b - a for a, b in itertools.pairwise(t for t, _args in self.every.calls[:4])]
        assert all(abs(gap - 2) < 1.0 for gap in gaps), f"period=2 ran at gaps {gaps}"


async def test_a_forward_jump_moves_run_at_but_not_after_or_period(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    offset = tmp_path / "offset"
    await _node(distributor, start_node, offset)
    # run_at 1 h + 4 s ahead of the real clock: after the jump, 4 s ahead of the node's clock.
    timed = _Timed(distributor, HOUR + 4)
    await async_wait_until(lambda: len(timed.every.calls) >= 1, 10)  # the node holds them all
    jumped = _jump(offset, HOUR) - timed.began
    await async_wait_until(
        lambda: bool(timed.after.calls and timed.at.calls) and len(timed.every.calls) >= 4, 15
    )
    timed.check_durations()
    at = _at(timed.at) - timed.began
    assert abs(at - 4) < 1.0, f"run_at fired at +{at:.2f}s (jump at +{jumped:.2f}s)"
    timed.periodic.cancel()


async def test_a_backward_jump_holds_run_at_until_its_instant_and_not_after_or_period(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    offset = tmp_path / "offset"
    await _node(distributor, start_node, offset)
    timed = _Timed(distributor, 4)
    await async_wait_until(lambda: len(timed.every.calls) >= 1, 10)
    _jump(offset, -HOUR)  # the node's wall clock reaches the run_at instant an hour later
    await async_wait_until(lambda: bool(timed.after.calls) and len(timed.every.calls) >= 4, 15)
    timed.check_durations()
    assert not timed.at.calls, "run_at= fired although the node's clock is an hour before it"
    back = _jump(offset, 0)  # set right again: the instant has passed, so it fires now
    await async_wait_until(lambda: bool(timed.at.calls), 5)
    late = _at(timed.at) - back
    assert late < 1.0, f"run_at fired {late:.2f}s after the clock was set right"
    timed.periodic.cancel()
