"""The handle ``enqueue_flow`` returns: the flow's id, its result (sync or awaited), its steps,
and cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import Any, Protocol

from reactor.distributor.handle import JobHandle
from reactor.errors import JobTimeoutError
from reactor.jobs.options import Feedback


class FlowControl(Protocol):
    """What a flow handle asks of the flow it follows."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The distributor's event loop (None for the offline test distributors)."""

    def cancel(self, flow_id: str) -> None:
        """Cancel the flow: its enqueued steps are cancelled, its pending ones never start."""

    def steps(self) -> list[tuple[str | None, str, str]]:
        """``(step job id or None, job name, status)`` of every step, in flow order."""


class FlowHandle(JobHandle):
    """Tracks one workflow from the application's side; safe to use from any thread.

    ``result()`` (or ``await handle``) gives the flow's result: the final args of a chain's last
    step, a group's list of its members' final args, or a chord callback's final args; it raises
    the failed step's :class:`~reactor.errors.JobFailed`, or
    :class:`~reactor.errors.JobCancelledError` after :meth:`cancel`.
    """

    __slots__ = ("_control",)

    def __init__(
        self,
        flow_id: str,
        control: FlowControl,
        on_success: Feedback | None,
        on_error: Feedback | None,
    ) -> None:
        super().__init__(flow_id, "flow", control, threading.Lock(), on_success, on_error)
        self._control = control

    @property
    def steps(self) -> list[tuple[str | None, str, str]]:
        """``(step id, job name, status)`` of every step, in flow order: the step id is its job
        id once enqueued (None before); the status is ``pending``, ``enqueued``,
        ``succeeded``, ``failed``, ``cancelled`` or ``skipped`` (the flow ended before it ran).
        """
        return self._control.steps()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the flow's result (a dict, or a group's list).

        Raises:
            JobFailed: a step failed (the first failure's error).
            JobCancelledError: the flow was cancelled with :meth:`cancel`.
            JobTimeoutError: ``timeout`` seconds passed first (the flow goes on).
        """
        try:
            return super().result(timeout)
        except JobTimeoutError:
            ended = sum(status not in ("pending", "enqueued") for _, _, status in self.steps)
            raise JobTimeoutError(
                f"flow {self.id} did not finish within {timeout}s ({ended} of "
                f"{len(self.steps)} steps ended; the flow goes on)"
            ) from None

    def __await__(self) -> Generator[Any, None, Any]:
        return super().__await__()

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<FlowHandle {self.id} {len(self.steps)} steps {state}>"
