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


class _Extras:
    """What only some handles need: progress, waiters, callbacks, a cancel asked for."""

    __slots__ = ("callbacks", "cancel_requested", "on_progress", "progress", "waiter")

    def __init__(self) -> None:
        self.on_progress: ProgressFeedback | None = None
        self.progress: tuple[float, str | None] | None = None
        self.waiter: concurrent.futures.Future[dict[str, Any]] | None = None
        self.callbacks: list[Callable[[Any, BaseException | None], Any]] | None = None
        self.cancel_requested = False


class JobHandle:
    """Tracks one enqueued job from the application's side.

    Safe to use from any thread. The result is kept on the handle; a ``concurrent.futures.Future``
    is made only when someone actually waits, so enqueueing stays cheap. A distributor holds one
    handle per job until it ends, so the handle keeps what every job needs in slots and the rest
    (progress, waiters, callbacks, a cancel asked for) in one small object made the first time
    one of them is set (issue 19, memory per held job).
    """

    __slots__ = (
        "_aio",
        "_distributor",
        "_extras",
        "_lock",
        "_outcome",
        "id",
        "name",
        "on_error",
        "on_success",
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
        self._distributor = distributor
        self._lock = lock
        # _UNSET, then the final args (a dict or None), or the error (never a dict: one slot
        # holds either).
        self._outcome: Any = _UNSET
        self._extras: _Extras | None = None
        # When awaited on the loop (a slot, not an extra: gathering handles is common, and an
        # extra would cost an object and a lock per awaited job).
        self._aio: asyncio.Future[dict[str, Any]] | None = None
        if on_progress is not None:
            self._more().on_progress = on_progress

    def _more(self) -> _Extras:
        """The handle's extras, made on first use (under the lock: any thread may be first)."""
        extras = self._extras
        if extras is None:
            with self._lock:
                extras = self._extras
                if extras is None:
                    extras = self._extras = _Extras()
        return extras

    @property
    def on_progress(self) -> ProgressFeedback | None:
        """``on_progress(fraction, note)``, called as the running attempt reports progress."""
        extras = self._extras
        return None if extras is None else extras.on_progress

    @property
    def progress(self) -> tuple[float, str | None] | None:
        """The latest progress report of the running attempt, ``(fraction, note)``, or None.

        Not durable; reports are coalesced on the node (about ten a second reach here).
        """
        extras = self._extras
        return None if extras is None else extras.progress

    @progress.setter
    def progress(self, report: tuple[float, str | None] | None) -> None:
        self._more().progress = report

    def done(self) -> bool:
        """Whether the job has finished (successfully, with an error, or cancelled)."""
        return self._outcome is not _UNSET

    def cancel(self) -> None:
        """Stop the job wherever it is: waiting in the distributor, or held by a node.

        A running attempt is told to stop: an ``async def`` job gets ``CancelledError`` at its
        next await, a ``def`` or ``defer=True`` job sees ``current_job().cancelled`` turn True;
        it ends cancelled however it then ends. A periodic or retrying job runs no more; a job
        that finished before the cancel reached its node keeps its outcome (no error).
        ``result()`` then raises :class:`~reactor.errors.JobCancelledError`.
        """
        if not self.done():
            self._more().cancel_requested = True
            self._distributor.cancel(self.id)

    def _cancel_pending(self) -> bool:
        """Whether a cancel was asked for and the job has not finished yet."""
        extras = self._extras
        return extras is not None and extras.cancel_requested and not self.done()

    def add_done_callback(self, fn: Callable[[Any, BaseException | None], Any]) -> None:
        """Call ``fn(value, error)`` once the job ends (at once when it has): on the thread that
        settles the handle (the distributor's loop), or here when it ended already. Workflows
        follow their steps with it."""
        extras = self._more()
        with self._lock:
            if not self.done():
                if extras.callbacks is None:
                    extras.callbacks = []
                extras.callbacks.append(fn)
                return
        fn(*_split(self._outcome))

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
        aio = self._aio
        if aio is None:
            aio = self._aio = loop.create_future()
            if self._outcome is not _UNSET:
                _settle(aio, self._outcome)
        return aio.__await__()

    def _future(self) -> concurrent.futures.Future[dict[str, Any]]:
        extras = self._more()
        with self._lock:
            waiter = extras.waiter
            if waiter is None:
                waiter = extras.waiter = concurrent.futures.Future()
                if self._outcome is not _UNSET:
                    _settle(waiter, self._outcome)
            return waiter

    def resolve(self, value: dict[str, Any] | None, error: BaseException | None = None) -> None:
        """Settle the handle: with ``error`` when given, else with ``value`` (the final args).

        Called by the distributor on its loop (and by the offline test distributors).
        """
        outcome = value if error is None else error
        with self._lock:
            if self._outcome is not _UNSET:  # done(), inlined: per job
                return
            self._outcome = outcome
            extras = self._extras
            if extras is not None:
                callbacks, extras.callbacks = extras.callbacks, None
        aio = self._aio
        if aio is not None and not aio.done():
            _settle(aio, outcome)
        if extras is None:  # no thread waits and no callback: the common case
            return
        if extras.waiter is not None:
            _settle(extras.waiter, outcome)
        if callbacks is not None:
            for fn in callbacks:
                fn(None if error is not None else value, error)

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<JobHandle {self.id} {self.name!r} {state}>"


def _split(outcome: Any) -> tuple[Any, BaseException | None]:
    """A settled handle's ``(value, error)``: the error when it holds one, else its value."""
    if isinstance(outcome, BaseException):
        return None, outcome
    return outcome, None


def _settle(
    future: asyncio.Future[dict[str, Any]] | concurrent.futures.Future[dict[str, Any]],
    outcome: Any,
) -> None:
    """Settle a waiter with a handle's outcome (an error, or the final args)."""
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
