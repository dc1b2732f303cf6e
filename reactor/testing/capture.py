"""Capture mode: ``enqueue`` records jobs without running them, for ``assert_enqueued``."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from reactor import protocol as P
from reactor.config import Config
from reactor.handle import Feedback, JobHandle
from reactor.testing.offline import OfflineDistributor


@dataclass(slots=True)
class CapturedJob:
    """One enqueue a :class:`CapturingDistributor` recorded.

    ``args`` went through msgpack (as a node would see them); ``delay`` is the seconds from the
    enqueue until the job is due (``after=``, or ``run_at=`` minus the enqueue's wall time).
    """

    id: str
    name: str
    args: dict[str, Any]
    delay: float
    run_at: float
    period: float | None
    defer: bool
    node: str | None
    not_node: str | None
    enqueued_at: float
    handle: JobHandle = field(repr=False)
    cancelled: bool = False


class CapturingDistributor(OfflineDistributor):
    """A distributor that records every job and runs none: test code that enqueues, not jobs.

    Handles stay pending (``handle.cancel()`` marks the captured job ``cancelled``). Checks are
    the real ones, so an unserialisable argument fails here as in production.
    """

    def __init__(self, *, config: Config | None = None) -> None:
        super().__init__(config=config)
        #: What was enqueued, oldest first.
        self.jobs: list[CapturedJob] = []

    def enqueue(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        after: float | None = None,
        run_at: dt.datetime | float | None = None,
        period: float | None = None,
        defer: bool = False,
        node: str | None = None,
        not_node: str | None = None,
        on_success: Feedback | None = None,
        on_error: Feedback | None = None,
    ) -> JobHandle:
        """Record the job; returns a handle that stays pending."""
        job_id, packed, delay, at = self._checked(
            name,
            args,
            after=after,
            run_at=run_at,
            period=period,
            node=node,
            not_node=not_node,
            on_success=on_success,
            on_error=on_error,
        )
        now = time.time()
        handle = JobHandle(job_id, name, self, self._lock, on_success, on_error)
        with self._lock:
            self.jobs.append(
                CapturedJob(
                    job_id,
                    name,
                    P.unpack_args(packed),
                    delay if not at else at - now,
                    at,
                    None if period is None else float(period),
                    bool(defer),
                    node,
                    not_node,
                    now,
                    handle,
                )
            )
        return handle

    def cancel(self, job_id: str) -> None:
        """Mark the captured job cancelled."""
        for job in self.jobs:
            if job.id == job_id:
                job.cancelled = True

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            self.jobs.clear()

    def enqueued(self, name: str | None = None) -> list[CapturedJob]:
        """The captured jobs named ``name`` (every one when None), oldest first."""
        return [j for j in self.jobs if name is None or j.name == name]

    def assert_enqueued(
        self,
        name: str,
        *,
        args: dict[str, Any] | None = None,
        count: int | None = None,
        after_between: tuple[float, float] | None = None,
    ) -> list[CapturedJob]:
        """Assert that jobs named ``name`` were enqueued, and return them.

        Args:
            name: the job name.
            args: only jobs whose args equal this dict (after msgpack, so tuples are lists).
            count: exactly this many matching jobs (default: at least one); 0 asserts none.
            after_between: ``(lo, hi)``: only jobs due between ``lo`` and ``hi`` seconds after
                their enqueue (``after=`` or ``run_at=``), bounds included.

        Raises:
            AssertionError: the matching jobs are not as asked; the message lists what was
                enqueued.
        """
        matching = self.enqueued(name)
        if args is not None:
            want = P.unpack_args(P.pack_args(args))
            matching = [j for j in matching if j.args == want]
        if after_between is not None:
            lo, hi = after_between
            matching = [j for j in matching if lo <= j.delay <= hi]
        if (count is None and not matching) or (count is not None and len(matching) != count):
            wanted = f"{count}" if count is not None else "at least one"
            what = f"{name!r}" + (f" with args {args!r}" if args is not None else "")
            if after_between is not None:
                what += f" due {after_between[0]}-{after_between[1]} s after enqueue"
            raise AssertionError(
                f"expected {wanted} job(s) {what}, found {len(matching)}; enqueued: "
                + (self._listing() or "nothing")
            )
        return matching

    def _listing(self) -> str:
        return "; ".join(f"{j.name}({j.args!r}, due in {j.delay:.3g} s)" for j in self.jobs[:20])
