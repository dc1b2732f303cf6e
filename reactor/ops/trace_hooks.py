"""Where tracing hooks into the distributor and the node: three module-level hooks, None unless
:class:`reactor.tracing.ReactorInstrumentor` installed them.

The drivers read a hook and call it only when it is set, so an uninstrumented process pays one
attribute read per enqueue, per run of the node's loop and per feedback, and imports no
OpenTelemetry. This module names the hooks' shapes; :mod:`reactor.tracing` fills them in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from reactor.jobs.options import EnqueueOptions
from reactor.jobs.outcome import Attempt
from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P

__all__ = ["AttemptScope", "FeedbackScope", "Process", "Send", "Feedback", "clear"]

_H = TypeVar("_H")


class Send(Protocol):
    """The enqueue hook: runs ``submit(name, args, options)`` inside a ``send`` span, with the
    span's context injected into ``options.trace``. Returns None, having called nothing, when
    there is no context to carry (OpenTelemetry's API without an SDK): the enqueue goes on as
    if not instrumented."""

    def __call__(
        self,
        submit: Callable[[str, dict[str, Any] | None, EnqueueOptions], _H],
        name: str,
        args: dict[str, Any] | None,
        options: EnqueueOptions,
    ) -> _H | None: ...


class AttemptScope(Protocol):
    """An attempt's ``process`` span, current until :meth:`end`."""

    def end(self, attempt: Attempt) -> None:
        """The attempt ended with ``attempt`` (its error, if any, is recorded)."""
        ...


class FeedbackScope(Protocol):
    """A feedback's ``feedback`` span, current until :meth:`end`."""

    def end(self, error: BaseException | None) -> None:
        """The feedback was handled; ``error`` is what the job's result raises (None: success)."""
        ...


#: ``process(record, node_name)``: an attempt of ``record`` starts on this thread.
Process = Callable[[JobRecord, str], AttemptScope]
#: ``feedback(job_name, job_wire, fb)``: the application handles a node's feedback.
Feedback = Callable[[str, list[Any], P.Feedback], FeedbackScope]

#: Called by ``Distributor.submit`` for an enqueue that carries no ``trace=`` of its own.
send: Send | None = None
#: Called by the node's runner around each attempt (``def``, ``async def`` and ``defer=True``).
process: Process | None = None
#: Called by the distributor around each feedback it hands to the application.
feedback: Feedback | None = None


def clear() -> None:
    """Remove every hook (what ``uninstrument()`` does)."""
    global send, process, feedback
    send = process = feedback = None
