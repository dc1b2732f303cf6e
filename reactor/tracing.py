"""OpenTelemetry tracing (extra ``otel``): :class:`ReactorInstrumentor` (DESIGN §11).

``ReactorInstrumentor().instrument()`` in the application and in each node process (or
``opentelemetry-instrument``, which finds it through the ``opentelemetry_instrumentor`` entry
point) adds spans with the messaging semantic conventions (``messaging.system = "reactor"``):

* ``send <job name>`` (PRODUCER) around each enqueue; its context travels in the job (a W3C
  carrier in the job's ``trace``), so what the node does is part of the enqueuing trace;
* ``process <job name>`` (CONSUMER) around each attempt on a node, a child of that context: a
  retry is a span of its own, a failed attempt's error is recorded with status ERROR, and the
  span is current in the job's body (a ``def`` on the loop, an ``async def``, or a
  ``defer=True`` body in its thread), so spans the job makes are its children;
* ``feedback <job name>`` (CONSUMER) around each feedback the application handles (its
  ``on_success``/``on_error`` run inside it), also a child of the enqueue's context.

An enqueue that passes its own ``trace=`` carrier is sent as it is, without a ``send`` span.
Uninstrumented, nothing here is imported: the drivers read hooks that are None
(:mod:`reactor.ops.trace_hooks`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from reactor._version import __version__
from reactor.jobs.options import EnqueueOptions
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.record import JobRecord
from reactor.ops import trace_hooks
from reactor.wire import protocol as P
from reactor.wire.layout import JOB_TRACE

try:
    from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
        BaseInstrumentor,
    )
except ImportError:  # opentelemetry-instrumentation is not installed: the same methods

    class BaseInstrumentor:  # type: ignore[no-redef]
        """instrument()/uninstrument() as OpenTelemetry's BaseInstrumentor has them."""

        _is_instrumented_by_opentelemetry = False

        def instrument(self, **kwargs: Any) -> None:
            if not self._is_instrumented_by_opentelemetry:
                self._instrument(**kwargs)
                self._is_instrumented_by_opentelemetry = True

        def uninstrument(self, **kwargs: Any) -> None:
            if self._is_instrumented_by_opentelemetry:
                self._uninstrument(**kwargs)
                self._is_instrumented_by_opentelemetry = False

        def _instrument(self, **kwargs: Any) -> None: ...

        def _uninstrument(self, **kwargs: Any) -> None: ...


__all__ = ["SYSTEM", "ReactorInstrumentor"]

#: ``messaging.system`` of every span.
SYSTEM = "reactor"
#: Where a JOB wire list holds its trace carrier (the last option), when it has one.
_TRACE_AT = JOB_TRACE
_H = TypeVar("_H")


class ReactorInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces reactor's enqueues, attempts and feedbacks (see the module docstring).

    ``instrument(tracer_provider=None)``: spans go to ``tracer_provider``, or the global one.
    ``uninstrument()``: no more spans (jobs already running finish their spans).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """Nothing to check: this instrumentor ships inside the package it instruments."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        provider = kwargs.get("tracer_provider")
        tracer = trace.get_tracer(__name__, __version__, tracer_provider=provider)
        trace_hooks.send = _Sender(tracer)
        trace_hooks.process = _Processor(tracer)
        trace_hooks.feedback = _FeedbackTracer(tracer)

    def _uninstrument(self, **kwargs: Any) -> None:
        trace_hooks.clear()


def _attributes(operation: str, kind: str, name: str, job_id: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": kind,
        "messaging.operation.name": operation,
        "messaging.destination.name": name,
    }
    if job_id is not None:
        found["messaging.message.id"] = job_id
    return found


def _record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_attribute("error.type", type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200]))


class _Sender:
    """The ``send`` hook: a PRODUCER span around the enqueue, its context in the job."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __call__(
        self,
        submit: Callable[[str, dict[str, Any] | None, EnqueueOptions], _H],
        name: str,
        args: dict[str, Any] | None,
        options: EnqueueOptions,
    ) -> _H | None:
        span = self.tracer.start_span(
            f"send {name}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes("send", "send", name, None),
        )
        if not span.get_span_context().is_valid:  # the API alone: nothing to carry
            return None
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        if not carrier:  # no propagator configured
            span.end()
            return None
        with trace.use_span(span, end_on_exit=True):
            handle = submit(name, args, options._replace(trace=carrier))
            job_id = getattr(handle, "id", None)
            if isinstance(job_id, str):
                span.set_attribute("messaging.message.id", job_id)
            return handle


class _AttemptScope:
    """An attempt's span, current on this thread (or task) until :meth:`end`."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.token = context.attach(trace.set_span_in_context(span))

    def end(self, attempt: Attempt) -> None:
        span = self.span
        try:
            outcome = attempt.outcome
            span.set_attribute("reactor.job.outcome", outcome.value)
            if attempt.error is not None and outcome is not Outcome.CANCELLED:
                _record_error(span, attempt.error)
        finally:
            context.detach(self.token)
            span.end()


class _Unrecorded:
    """The scope of a span that is neither recorded nor carries a context (OpenTelemetry's API
    alone): nothing to make current, nothing to end."""

    __slots__ = ()

    def end(self, outcome: object) -> None:
        """Nothing to do."""


_UNRECORDED = _Unrecorded()


class _Processor:
    """The ``process`` hook: a CONSUMER span per attempt, a child of the enqueue's context."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __call__(self, record: JobRecord, node: str) -> _AttemptScope | _Unrecorded:
        parent = propagate.extract(record.trace) if record.trace else context.Context()
        attributes = _attributes("process", "process", record.name, record.id)
        attributes["messaging.client.id"] = node
        attributes["reactor.job.attempt"] = record.attempt
        span = self.tracer.start_span(
            f"process {record.name}", parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        if not span.get_span_context().is_valid:
            return _UNRECORDED
        return _AttemptScope(span)


class _FeedbackScope:
    """A feedback's span, current while the application's callable runs."""

    __slots__ = ("cancelled", "span", "token")

    def __init__(self, span: Span, cancelled: bool) -> None:
        self.span = span
        self.cancelled = cancelled
        self.token = context.attach(trace.set_span_in_context(span))

    def end(self, error: BaseException | None) -> None:
        try:
            if error is not None and not self.cancelled:  # a cancel is no error
                _record_error(self.span, error)
        finally:
            context.detach(self.token)
            self.span.end()


_OUTCOMES = {P.SUCCESS: "success", P.FAILURE: "failure", P.CANCELLED: "cancelled"}


class _FeedbackTracer:
    """The ``feedback`` hook: a CONSUMER span per feedback, a child of the enqueue's context."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def __call__(self, name: str, wire: list[Any], fb: P.Feedback) -> _FeedbackScope | _Unrecorded:
        flat = wire[_TRACE_AT] if len(wire) > _TRACE_AT else None
        parent = (
            propagate.extract(dict(zip(flat[::2], flat[1::2], strict=True)))
            if flat
            else context.Context()
        )
        attributes = _attributes("feedback", "process", name, fb.id)
        attributes["reactor.job.outcome"] = _OUTCOMES.get(fb.outcome, str(fb.outcome))
        attributes["reactor.job.final"] = bool(fb.final)
        span = self.tracer.start_span(
            f"feedback {name}", parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        if not span.get_span_context().is_valid:
            return _UNRECORDED
        return _FeedbackScope(span, fb.outcome == P.CANCELLED)
