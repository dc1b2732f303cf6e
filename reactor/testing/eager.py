"""Eager mode: ``enqueue`` runs the job's chain inline and calls its feedback before returning,
like Celery's ``task_always_eager``."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from reactor.config import Config
from reactor.core.lifecycle import RetryPolicy, error_triple
from reactor.distributor.feedback import run_feedback
from reactor.distributor.handle import JobHandle
from reactor.jobs import context
from reactor.jobs.chain import run_async, run_sync, run_sync_limited
from reactor.jobs.context import JobContext
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.registry import JobEntry
from reactor.testing.jobs import Jobs, registry_from
from reactor.testing.offline import EnqueuedJob, OfflineDistributor
from reactor.wire import protocol as P

log = logging.getLogger("reactor.testing")
T = TypeVar("T")


class EagerDistributor(OfflineDistributor):
    """A distributor that runs every job at once, in the caller, through the real chain runner.

    ``enqueue`` checks the job as production does, runs the body and callbacks (errbacks on an
    exception, retrying as the job's retry policy says, ``max_attempt``, ``retry_on``,
    ``give_up_on``, but without waiting its backoff), calls ``on_success`` or ``on_error`` with
    the final args, and returns a handle that is already done. The args cross msgpack both ways,
    as on the wire, and ``timeout`` applies as on a node. ``after=``/``run_at=`` are ignored (the
    job runs now), a periodic or cron job runs once, ``priority`` and ``node`` have no effect.
    ``async def`` chains run on a loop of their own. ``current_job()`` works in the job (its
    ``progress()`` reports reach ``handle.progress`` and ``on_progress`` at once; ``cancelled``
    stays False: the job is over before ``enqueue`` returns).

    Args:
        jobs: the jobs (see :func:`reactor.testing.registry_from`).
        config: settings (``max_attempt`` is read); a private default when omitted.
    """

    def __init__(self, jobs: Jobs, *, config: Config | None = None) -> None:
        super().__init__(config=config)
        self.registry = registry_from(jobs)
        #: Every handle this distributor returned, oldest first.
        self.handles: list[JobHandle] = []

    def accept(self, job: EnqueuedJob) -> None:
        """Run every attempt of ``job`` now, call its feedback and settle its handle."""
        fb = self._run(job)
        result, error = run_feedback(job.name, job.handle, fb)
        job.handle.resolve(result, error)

    def _run(self, job: EnqueuedJob) -> P.Feedback:
        """Every attempt of the job, as the final feedback a node would send."""
        job_id, name, packed = job.id, job.name, job.packed
        entry = self.registry.get(name)
        if entry is None:
            known = ", ".join(self.registry.names()) or "none"
            message = f"no job named {name!r} in this test's jobs (known: {known})"
            return P.Feedback(job_id, 1, 1, P.FAILURE, True, packed, ("NoSuchJob", message, ""))
        policy = RetryPolicy.of(
            entry,
            max_attempt=int(self.config["max_attempt"]),
            retry_multiplier=float(self.config["retry_multiplier"]),
        )
        max_attempt = job.max_attempt or policy.max_attempt
        timeout = job.timeout or entry.timeout
        handle = job.handle

        def report(fraction: float, note: str | None) -> None:
            handle.progress = (fraction, note)
            if handle.on_progress is not None:
                handle.on_progress(fraction, note)

        for number in range(1, max_attempt + 1):
            token = context.enter(JobContext(job_id, name, number, report))
            try:
                attempt = self._attempt(entry, packed, timeout)
            finally:
                context.leave(token)
            if attempt.outcome in (Outcome.DONE, Outcome.CANCELLED):
                out = P.pack_result_args(attempt.args)
                return P.Feedback(job_id, 1, number, P.SUCCESS, True, out, None)
            assert attempt.error is not None
            if (
                attempt.outcome is Outcome.FAILED_CANCELLED
                or number == max_attempt
                or not policy.retries(attempt.error)
            ):
                kept = {k: v for k, v in attempt.args.items() if k != "error"}
                error = error_triple(attempt.error)
                out = P.pack_result_args(kept)
                return P.Feedback(job_id, 1, number, P.FAILURE, True, out, error)
            log.info("eager job %s (%r) failed attempt %d: %s", job_id, name, number, attempt.error)
        raise AssertionError("unreachable: max_attempt >= 1")  # pragma: no cover

    def _attempt(self, entry: JobEntry, packed: bytes, timeout: float | None) -> Attempt:
        args = P.unpack_args(packed)

        def fresh() -> dict[str, Any]:
            return P.unpack_args(packed)

        if entry.is_async:
            return _run_blocking(run_async(entry, args, fresh, timeout=timeout))
        if timeout is not None:
            return run_sync_limited(entry, args, fresh, timeout)
        return run_sync(entry, args, fresh)


def _run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    # A thread starts with an empty context: the attempt's (current_job()) goes along.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(target,), name="reactor-eager"
    )
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]
