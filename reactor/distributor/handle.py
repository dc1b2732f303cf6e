"""The handle ``enqueue`` returns: the job's id, its result (sync or awaited), and cancellation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Generator
from typing import Any, Protocol

from reactor.errors import JobTimeoutError
from reactor.jobs.options import Feedback, ProgressFeedback

__all__ = ["Feedback", "JobHandle", "ProgressFeedback"]

_UNSET: Any = object()


class Canceller(Protocol):
    """What a handle asks of its distributor: cancelling, and the loop it settles handles on."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The distributor's event loop (None before it starts)."""

    def cancel(self, job_id: str) -> None:
        """Cancel job ``job_id``."""


class JobHandle:
    """Tracks one enqueued job from the application's side.

    Safe to use from any thread. The result is kept on the handle; a ``concurrent.futures.Future``
    is made only when someone actually waits, so enqueueing stays cheap.
    """

    __slots__ = (
        "_aio",
        "_callbacks",
        "_cancel_requested",
        "_distributor",
        "_error",
        "_lock",
        "_value",
        "_waiter",
        "id",
        "name",
        "on_error",
        "on_progress",
        "on_success",
        "progress",
    )

    def __init__(
        self,
        job_id: str,
        name: str,
        distributor: Canceller,
        lock: threading.Lock,
        on_success: Feedback | None = None,
        on_error: Feedback | None = None,
        on_progress: ProgressFeedback | None = None,
    ) -> None:
        self.id = job_id
        self.name = name
        self.on_success = on_success
        self.on_error = on_error
        self.on_progress = on_progress
        #: The latest progress report of the running attempt, ``(fraction, note)``, or None.
        #: Not durable; reports are coalesced on the node (about ten a second reach here).
        self.progress: tuple[float, str | None] | None = None
        self._distributor = distributor
        self._lock = lock
        self._value: Any = _UNSET
        self._error: BaseException | None = None
        self._waiter: concurrent.futures.Future[dict[str, Any]] | None = None
        self._cancel_requested = False
        self._aio: asyncio.Future[dict[str, Any]] | None = None  # when awaited on the loop
        self._callbacks: list[Callable[[Any, BaseException | None], Any]] | None = None

    def done(self) -> bool:
        """Whether the job has finished (successfully, with an error, or cancelled)."""
        return self._value is not _UNSET or self._error is not None

    def cancel(self) -> None:
        """Stop the job wherever it is: waiting in the distributor, or held by a node.

        A running attempt is told to stop: an ``async def`` job gets ``CancelledError`` at its
        next await, a ``def`` or ``defer=True`` job sees ``current_job().cancelled`` turn True;
        it ends cancelled however it then ends. A periodic or retrying job runs no more; a job
        that finished before the cancel reached its node keeps its outcome (no error).
        ``result()`` then raises :class:`~reactor.errors.JobCancelledError`.
        """
        if not self.done():
            self._cancel_requested = True
            self._distributor.cancel(self.id)

    def _cancel_pending(self) -> bool:
        """Whether a cancel was asked for and the job has not finished yet."""
        return self._cancel_requested and not self.done()

    def add_done_callback(self, fn: Callable[[Any, BaseException | None], Any]) -> None:
        """Call ``fn(value, error)`` once the job ends (at once when it has): on the thread that
        settles the handle (the distributor's loop), or here when it ended already. Workflows
        follow their steps with it."""
        with self._lock:
            if not self.done():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(None if self._error is not None else self._value, self._error)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the job's final args.

        Raises:
            JobFailed: the job failed after its last attempt.
            JobCancelledError: the job was cancelled with :meth:`cancel`.
            JobTimeoutError: ``timeout`` seconds passed first (the job goes on).
        """
        try:
            return self._future().result(timeout)
        except concurrent.futures.TimeoutError:
            hint = getattr(self._distributor, "timeout_hint", lambda: "")()  # the Distributor's
            raise JobTimeoutError(
                f"job {self.id} ({self.name!r}) did not finish within {timeout}s"
                + (f": {hint}" if hint else "")
            ) from None

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if loop is not self._distributor.loop:
            return asyncio.wrap_future(self._future()).__await__()
        # On the distributor's own loop: a plain asyncio future, settled without a thread hop.
        if self._aio is None:
            self._aio = loop.create_future()
            if self._error is not None:
                self._aio.set_exception(self._error)
            elif self._value is not _UNSET:
                self._aio.set_result(self._value)
        return self._aio.__await__()

    def _future(self) -> concurrent.futures.Future[dict[str, Any]]:
        with self._lock:
            if self._waiter is None:
                self._waiter = concurrent.futures.Future()
                if self._error is not None:
                    self._waiter.set_exception(self._error)
                elif self._value is not _UNSET:
                    self._waiter.set_result(self._value)
            return self._waiter

    def resolve(self, value: dict[str, Any] | None, error: BaseException | None = None) -> None:
        """Settle the handle: with ``error`` when given, else with ``value`` (the final args).

        Called by the distributor on its loop (and by the offline test distributors).
        """
        with self._lock:
            if self._value is not _UNSET or self._error is not None:  # done(), inlined: per job
                return
            if error is not None:
                self._error = error
            else:
                self._value = value
            waiter = self._waiter
            callbacks, self._callbacks = self._callbacks, None
        aio = self._aio
        if aio is not None and not aio.done():
            if error is not None:
                aio.set_exception(error)
            else:
                aio.set_result(self._value)
        if waiter is not None:
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(self._value)
        if callbacks is not None:
            for fn in callbacks:
                fn(None if error is not None else self._value, error)

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<JobHandle {self.id} {self.name!r} {state}>"
