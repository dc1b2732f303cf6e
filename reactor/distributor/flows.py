"""Workflows on a distributor: each step is an ordinary job, enqueued through the distributor's
own ``submit`` (so retries, time limits, pinning, priorities and the delivery contract apply per
step), and each step's end, seen on its handle, is fed to the flow's :class:`FlowMachine`.

Threads: a flow's state changes only on the distributor's loop (an ``enqueue_flow`` from another
thread posts its start there), where step handles settle. The offline test distributors have no
loop: there the caller's thread runs the flow, and a queue keeps steps that end inside
``submit`` (eager mode) from recursing. A durable flow (``outbox=``) records each step's launch
and end in a :class:`~reactor.storage.flows.FlowStore` (see ``workflows``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reactor.core.flow import (
    CANCELLED,
    ENDED,
    ENQUEUED,
    FAILED,
    SUCCEEDED,
    FlowMachine,
    Launch,
)
from reactor.distributor.flow_handle import FlowHandle
from reactor.errors import JobCancelledError, JobFailed, ReactorError, RemoteError
from reactor.jobs.options import Feedback
from reactor.storage.flows import step_entry
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.distributor.driver import Distributor
    from reactor.storage.flows import FlowStore

__all__ = ["FlowHandle", "FlowRunner"]

log = logging.getLogger("reactor.flows")


class FlowRunner:
    """Drives one flow: enqueues the steps its machine launches and feeds it their ends.

    Args:
        distributor: where the steps are enqueued (its ``submit``, ``cancel`` and loop).
        machine: the flow's rule and state.
        on_success: called once with the flow's result when it succeeds.
        on_error: called once with the failed step's final args (``args["error"]`` the
            RemoteError) when the flow fails.
        store: where a durable flow records its steps (``outbox=``), or None.
        flow_id: the flow's id (a new one when None; a continued flow keeps its own).
    """

    def __init__(
        self,
        distributor: Distributor,
        machine: FlowMachine,
        on_success: Feedback | None,
        on_error: Feedback | None,
        *,
        store: FlowStore | None = None,
        flow_id: str | None = None,
    ) -> None:
        self.distributor = distributor
        self.machine = machine
        self.store = store
        self.id = flow_id or f"flow-{secrets.token_hex(8)}"
        self.handle = FlowHandle(self.id, self, on_success, on_error)
        #: Whether the distributor stopped while a durable flow ran: the group continues it.
        self.left = False
        #: Whether its steps are being enqueued (a durable flow: its record is written).
        self.started = False
        self._queue: deque[Launch] = deque()
        self._busy = False  # launching now: steps that end meanwhile queue their successors
        self._cancelled = False
        self._reported = False
        #: Called with this runner once the flow ended (the distributor forgets it).
        self.on_end: Callable[[FlowRunner], None] | None = None

    # -- what the handle asks (any thread) --------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The distributor's loop (None offline)."""
        return self.distributor.loop

    def steps(self) -> list[tuple[str | None, str, str]]:
        """Every step's ``(job id, name, status)``."""
        return self.machine.steps()

    def cancel(self, flow_id: str) -> None:
        """Cancel the flow (on its loop)."""
        self.post(self._cancel)

    def post(self, fn: Any) -> None:
        """Run ``fn`` where the flow's state lives: the distributor's loop, or here offline."""
        loop = self.distributor.loop
        if loop is None or _running_loop() is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    # -- on the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        """Enqueue the flow's first steps."""
        self.distributor.metrics.flow_started()
        self.started = True
        self._launch(self.machine.start())

    def resume(self, launches: list[Launch]) -> None:
        """Continue a flow another member started: enqueue ``launches`` (from
        :meth:`FlowMachine.resume`), or report the end the record already holds."""
        self.started = True
        self._launch(launches)

    def _launch(self, launches: list[Launch]) -> None:
        queue = self._queue
        queue.extend(launches)
        if self._busy:
            return
        self._busy = True
        try:
            while queue:
                self._send(queue.popleft())
        finally:
            self._busy = False
        self._report()

    def _send(self, launch: Launch) -> None:
        index = launch.number
        if self._cancelled:
            self.machine.not_sent(index)
            return
        try:
            handle = self.distributor.submit(launch.name, launch.args, launch.options)
        except (ReactorError, TypeError, ValueError) as exc:
            log.warning("flow %s: step %d (%r) not enqueued: %s", self.id, index, launch.name, exc)
            self.machine.failed(index, exc)
            return
        self.machine.job_ids[index] = handle.id
        if self.store is not None:
            self.store.record(self.id, index, step_entry(ENQUEUED, handle.id, None, None))
        handle.add_done_callback(functools.partial(self._ended, index))

    def _ended(self, index: int, value: Any, error: BaseException | None) -> None:
        """Step ``index``'s handle settled (its one outcome)."""
        if self.store is not None and type(error) is ReactorError:
            self.left = True  # the distributor stopped (Outcomes.stopped): the group goes on
        if self.left:
            return  # the distributor stopped: this is its stop, not the step's outcome
        machine = self.machine
        if error is None:
            args = value if isinstance(value, dict) else {}
            self._record(index, SUCCEEDED, args, None)
            self._launch(machine.succeeded(index, args))
            return
        cancelled = isinstance(error, JobCancelledError)
        if isinstance(error, JobFailed):
            self._record(index, FAILED, error.args_dict, error.error)
        elif not cancelled:
            self._record(index, FAILED, {}, RemoteError(type(error).__name__, str(error)))
        machine.failed(index, error, cancelled=cancelled)
        if not self._busy:
            self._report()

    def _record(
        self, index: int, status: str, args: dict[str, Any], error: RemoteError | None
    ) -> None:
        """A durable flow keeps each step's end before acting on it."""
        store = self.store
        if store is None or self.machine.status[index] in ENDED:
            return
        packed = P.pack_result_args({k: v for k, v in args.items() if k != "error"})
        triple = None if error is None else [error.type_name, error.message, error.traceback]
        job_id = self.machine.job_ids[index]
        store.record(self.id, index, step_entry(status, job_id, packed, triple))

    def _cancel(self) -> None:
        self._cancelled = True
        error = JobCancelledError(f"flow {self.id} was cancelled")
        for index in self.machine.cancel(error):
            job_id = self.machine.job_ids[index]
            if job_id is not None:
                self.distributor.cancel(job_id)
        self._report()

    def _report(self) -> None:
        """Once the flow ended: settle the handle, call on_success or on_error, keep the outcome."""
        machine = self.machine
        if not machine.done or self._reported:
            return
        self._reported = True
        error = machine.error
        handle = self.handle
        metrics = self.distributor.metrics
        on_end = self.on_end
        if on_end is not None:
            on_end(self)
        if error is None:
            metrics.flow_ended("succeeded")
            self._keep(P.SUCCESS, machine.result, None)
            handle.resolve(machine.result)
            _call(handle.on_success, machine.result, self.id)
            return
        assert isinstance(error, BaseException)
        if isinstance(error, JobCancelledError) and self._cancelled:
            metrics.flow_ended("cancelled")
            self._keep(P.CANCELLED, {}, None)
            handle.resolve(None, error)
            return
        metrics.flow_ended("failed")
        args, remote = _failure(error)
        self._keep(P.FAILURE, args, remote)
        failed = error if isinstance(error, JobFailed) else JobFailed(self.id, remote, args)
        handle.resolve(None, failed)
        _call(handle.on_error, {**args, "error": remote}, self.id)

    def _keep(self, outcome: int, result: Any, error: RemoteError | None) -> None:
        """The flow's outcome to the result store (``result_store=``), under the flow's id."""
        triple = None if error is None else (error.type_name, error.message, error.traceback)
        if self.store is not None:
            status = {P.SUCCESS: SUCCEEDED, P.FAILURE: FAILED}.get(outcome, CANCELLED)
            self.store.finish(self.id, status, None if triple is None else list(triple))
        results = self.distributor.outcomes.results
        if results is None:
            return
        args = {"results": result} if isinstance(result, list) else result
        fb = P.Feedback(self.id, 0, 1, outcome, True, P.pack_result_args(args), triple)
        results.record(self.id, "flow", None if outcome == P.CANCELLED else fb)


def _failure(error: BaseException) -> tuple[dict[str, Any], RemoteError]:
    """A step's error as the failed step's final args (without ``"error"``) and its RemoteError."""
    if isinstance(error, JobFailed):
        args = {k: v for k, v in error.args_dict.items() if k != "error"}
        return args, error.error
    return {}, RemoteError(type(error).__name__, str(error))


def _call(feedback: Feedback | None, value: Any, flow_id: str) -> None:
    if feedback is None:
        return
    try:
        feedback(value)
    except Exception:
        log.exception("the feedback of flow %s raised; the distributor goes on", flow_id)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
