"""OpenTelemetry tracing across real processes: the application (this process, the SDK's in-memory
exporter) enqueues to a ``reactor node`` process that writes its spans as JSON lines to a file;
the node's ``process`` spans are children of the application's ``send`` spans (DESIGN §11)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from reactor import Distributor, JobFailed
from reactor.ops import trace_hooks
from reactor.testing.support import async_wait_until
from reactor.tracing import ReactorInstrumentor

from ..conftest import NodeFactory, wait_for_node

JOBS = Path(__file__).parent / "jobs"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The application's spans; reactor instrumented with a provider of its own (the global
    one can be set once per process)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = ReactorInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield memory
    instrumentor.uninstrument()
    provider.shutdown()


@pytest.fixture
def traced_node(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> Iterator[Path]:
    """A node process that writes its spans to the file this yields."""
    spans = tmp_path / "node-spans.jsonl"
    start_node(
        "traced",
        [distributor.address],
        jobs=JOBS,
        env={"REACTOR_TEST_SPANS": str(spans)},
    )
    yield spans


def node_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_spans(path: Path, count: int, name: str) -> list[dict[str, Any]]:
    def found() -> list[dict[str, Any]]:
        return [s for s in node_spans(path) if s["name"] == name]

    await async_wait_until(lambda: len(found()) >= count, 10, message=f"{count} {name!r} spans")
    return found()


def hex_id(value: int) -> str:
    return f"0x{value:016x}" if value < 1 << 64 else f"0x{value:032x}"


def app_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


async def test_the_process_span_is_a_child_of_the_send_span_across_processes(
    distributor: Distributor, traced_node: Path, exporter: InMemorySpanExporter
) -> None:
    await wait_for_node(distributor, "traced")
    handle = distributor.enqueue("traced_ok", {})
    await handle
    send = app_span(exporter, "send traced_ok")
    assert send.kind is SpanKind.PRODUCER
    assert send.attributes is not None
    assert send.attributes["messaging.system"] == "reactor"
    assert send.attributes["messaging.destination.name"] == "traced_ok"
    assert send.attributes["messaging.message.id"] == handle.id
    (process,) = await wait_spans(traced_node, 1, "process traced_ok")
    assert send.context is not None
    assert process["context"]["trace_id"] == hex_id(send.context.trace_id)
    assert process["parent_id"] == hex_id(send.context.span_id)
    assert process["kind"] == "SpanKind.CONSUMER"
    assert process["attributes"]["messaging.system"] == "reactor"
    assert process["attributes"]["messaging.operation.type"] == "process"
    assert process["attributes"]["messaging.message.id"] == handle.id
    assert process["attributes"]["messaging.client.id"] == "traced"
    assert process["attributes"]["reactor.job.attempt"] == 1
    assert process["status"]["status_code"] == "UNSET"
    (inside,) = await wait_spans(traced_node, 1, "inside def")  # current in the job's body
    assert inside["parent_id"] == process["context"]["span_id"]
    await async_wait_until(
        lambda: any(s.name == "feedback traced_ok" for s in exporter.get_finished_spans()), 5
    )
    feedback = app_span(exporter, "feedback traced_ok")
    assert feedback.kind is SpanKind.CONSUMER and feedback.parent is not None
    assert feedback.context is not None
    assert feedback.context.trace_id == send.context.trace_id
    assert feedback.parent.span_id == send.context.span_id


async def test_send_is_a_child_of_the_applications_current_span(
    distributor: Distributor, traced_node: Path, exporter: InMemorySpanExporter
) -> None:
    await wait_for_node(distributor, "traced")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("tests").start_as_current_span("request") as request:
        handle = distributor.enqueue("traced_async", {})
    await handle
    send = app_span(exporter, "send traced_async")
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    (process,) = await wait_spans(traced_node, 1, "process traced_async")
    assert process["context"]["trace_id"] == hex_id(request.get_span_context().trace_id)
    (inside,) = await wait_spans(traced_node, 1, "inside async")
    assert inside["parent_id"] == process["context"]["span_id"]


async def test_a_deferred_body_runs_with_the_attempts_span_current_in_its_thread(
    distributor: Distributor, traced_node: Path, exporter: InMemorySpanExporter
) -> None:
    await wait_for_node(distributor, "traced")
    await distributor.enqueue("traced_defer", {}, defer=True)
    await distributor.enqueue("traced_defer", {}, defer=True, timeout=5.0)  # its own thread
    processes = await wait_spans(traced_node, 2, "process traced_defer")
    insides = await wait_spans(traced_node, 2, "inside defer")
    assert {s["parent_id"] for s in insides} == {p["context"]["span_id"] for p in processes}


async def test_each_retry_is_a_span_of_its_own_with_the_error_recorded(
    distributor: Distributor, traced_node: Path, exporter: InMemorySpanExporter
) -> None:
    await wait_for_node(distributor, "traced")
    handle = distributor.enqueue("traced_fail", {})
    with pytest.raises(JobFailed):
        await handle
    send = app_span(exporter, "send traced_fail")
    assert send.context is not None
    attempts = await wait_spans(traced_node, 3, "process traced_fail")
    assert len(attempts) == 3
    assert len({s["context"]["span_id"] for s in attempts}) == 3
    assert {s["context"]["trace_id"] for s in attempts} == {hex_id(send.context.trace_id)}
    assert {s["parent_id"] for s in attempts} == {hex_id(send.context.span_id)}
    assert sorted(s["attributes"]["reactor.job.attempt"] for s in attempts) == [1, 2, 3]
    for span in attempts:
        assert span["status"]["status_code"] == "ERROR"
        assert span["attributes"]["error.type"] == "ValueError"
        (event,) = [e for e in span["events"] if e["name"] == "exception"]
        assert event["attributes"]["exception.message"] == "traced failure"
    await async_wait_until(
        lambda: any(
            s.name == "feedback traced_fail" and s.status.status_code is StatusCode.ERROR
            for s in exporter.get_finished_spans()
        ),
        5,
    )


async def test_uninstrumented_the_hooks_are_none_and_nothing_travels(
    distributor: Distributor, traced_node: Path
) -> None:
    assert trace_hooks.send is None and trace_hooks.process is None
    assert trace_hooks.feedback is None
    await wait_for_node(distributor, "traced")
    await distributor.enqueue("traced_ok", {})
    (process,) = await wait_spans(traced_node, 1, "process traced_ok")
    assert process["parent_id"] is None  # the node is instrumented, the application is not


async def test_an_explicit_carrier_is_sent_as_given(
    distributor: Distributor, traced_node: Path, exporter: InMemorySpanExporter
) -> None:
    from reactor.jobs.options import EnqueueOptions

    carrier = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    await wait_for_node(distributor, "traced")
    await distributor.submit("traced_ok", {}, EnqueueOptions(trace=carrier))
    assert not [s for s in exporter.get_finished_spans() if s.name.startswith("send")]
    (process,) = await wait_spans(traced_node, 1, "process traced_ok")
    assert process["context"]["trace_id"] == "0x0af7651916cd43dd8448eb211c80319c"
    assert process["parent_id"] == "0xb7ad6b7169203331"


def test_the_instrumentor_is_found_through_its_entry_point() -> None:
    from importlib.metadata import entry_points

    (found,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "reactor"]
    assert found.load() is ReactorInstrumentor
    instrumentor = ReactorInstrumentor()
    assert instrumentor is ReactorInstrumentor()  # BaseInstrumentor's one instance
    instrumentor.instrument(tracer_provider=TracerProvider())
    try:
        assert trace_hooks.send is not None and trace_hooks.process is not None
        assert trace_hooks.feedback is not None
    finally:
        instrumentor.uninstrument()
    assert trace_hooks.send is None and trace_hooks.process is None
    assert trace_hooks.feedback is None


async def test_with_the_api_alone_jobs_run_and_carry_no_context(distributor: Distributor) -> None:
    """No SDK (a no-op provider): the enqueue goes on as if not instrumented, the attempt's and
    the feedback's scopes are no-ops, and everything still runs."""
    from opentelemetry.trace import NoOpTracerProvider

    from reactor.jobs.registry import JobRegistry
    from reactor.node.driver import Node

    seen: list[dict[str, Any]] = []
    registry = JobRegistry()
    registry.define("plain", lambda args: args.update(ok=True))
    instrumentor = ReactorInstrumentor()
    instrumentor.instrument(tracer_provider=NoOpTracerProvider())
    node = Node(
        "api", distributors=[distributor.address], registry=registry, config=distributor.config
    )
    try:
        await node.start()
        handle = distributor.enqueue("plain", {}, on_success=seen.append)
        assert (await handle)["ok"] is True
        assert seen and seen[0]["ok"] is True
        later = distributor.enqueue("plain", {}, after=60)  # stays held by the node
        await async_wait_until(lambda: later.id in node.jobs, 5)
        assert node.jobs[later.id].trace is None
    finally:
        instrumentor.uninstrument()
        await node.stop()
