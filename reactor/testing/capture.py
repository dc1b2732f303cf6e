"""Capture mode: ``enqueue`` records jobs without running them, for ``assert_enqueued``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reactor.config import Config
from reactor.distributor.flow_handle import FlowHandle
from reactor.jobs.flow import Flow
from reactor.jobs.options import Feedback
from reactor.testing.offline import EnqueuedJob, OfflineDistributor
from reactor.wire import protocol as P


class CapturingDistributor(OfflineDistributor):
    """A distributor that records every job and runs none: test code that enqueues, not jobs.

    Handles stay pending (``handle.cancel()`` marks the captured job ``cancelled``). Checks are
    the real ones, so an unserialisable argument fails here as in production. A workflow is
    recorded in :attr:`flows`, and its first steps in :attr:`jobs` (none ends, so no later
    step is enqueued).
    """

    def __init__(self, *, config: Config | None = None) -> None:
        super().__init__(config=config)
        #: What was enqueued, oldest first.
        self.jobs: list[EnqueuedJob] = []
        #: The workflows enqueued (``enqueue_flow``), oldest first.
        self.flows: list[CapturedFlow] = []

    def enqueue_flow(
        self, flow: Flow, *, on_success: Feedback | None = None, on_error: Feedback | None = None
    ) -> FlowHandle:
        """Check and record ``flow``; its first steps are captured as jobs."""
        handle = super().enqueue_flow(flow, on_success=on_success, on_error=on_error)
        with self._lock:
            self.flows.append(CapturedFlow(handle.id, flow, handle))
        return handle

    def accept(self, job: EnqueuedJob) -> None:
        """Record ``job``."""
        with self._lock:
            self.jobs.append(job)

    def cancel(self, job_id: str) -> None:
        """Mark the captured job cancelled."""
        for job in self.jobs:
            if job.id == job_id:
                job.cancelled = True

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            self.jobs.clear()
            self.flows.clear()

    def enqueued(self, name: str | None = None) -> list[EnqueuedJob]:
        """The captured jobs named ``name`` (every one when None), oldest first."""
        return [j for j in self.jobs if name is None or j.name == name]

    def assert_enqueued(
        self,
        name: str,
        *,
        args: dict[str, Any] | None = None,
        count: int | None = None,
        after_between: tuple[float, float] | None = None,
        tags: list[str] | tuple[str, ...] | None = None,
    ) -> list[EnqueuedJob]:
        """Assert that jobs named ``name`` were enqueued, and return them.

        Args:
            name: the job name.
            args: only jobs whose args equal this dict (after msgpack, so tuples are lists).
            count: exactly this many matching jobs (default: at least one); 0 asserts none.
            after_between: ``(lo, hi)``: only jobs due between ``lo`` and ``hi`` seconds after
                their enqueue (``after=`` or ``run_at=``), bounds included.
            tags: only jobs carrying every one of these tags (others they carry too are fine);
                ``[]`` asserts jobs enqueued without tags.

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
        if tags is not None:
            matching = [j for j in matching if _tagged(j, tags)]
        if (count is None and not matching) or (count is not None and len(matching) != count):
            wanted = f"{count}" if count is not None else "at least one"
            what = f"{name!r}" + (f" with args {args!r}" if args is not None else "")
            if after_between is not None:
                what += f" due {after_between[0]}-{after_between[1]} s after enqueue"
            if tags is not None:
                what += f" tagged {list(tags)!r}"
            raise AssertionError(
                f"expected {wanted} job(s) {what}, found {len(matching)}; enqueued: "
                + (self._listing() or "nothing")
            )
        return matching

    def _listing(self) -> str:
        return "; ".join(
            f"{j.name}({j.args!r}, due in {j.delay:.3g} s"
            + (f", tags {j.tags!r})" if j.tags else ")")
            for j in self.jobs[:20]
        )


@dataclass(slots=True)
class CapturedFlow:
    """One workflow a :class:`CapturingDistributor` recorded: its id, the flow as built, and
    the handle it returned (pending: captured steps never end)."""

    id: str
    flow: Flow
    handle: FlowHandle


def _tagged(job: EnqueuedJob, tags: list[str] | tuple[str, ...]) -> bool:
    """Whether ``job`` carries every one of ``tags`` (``[]``: whether it carries none)."""
    if not tags:
        return not job.tags
    return set(tags) <= set(job.tags or ())
