"""Jobs for the tracing tests. With REACTOR_TEST_SPANS=PATH in its environment, the node process
that loads this file sets up OpenTelemetry's SDK writing every span as a JSON line to PATH (the
SDK's console exporter) and instruments reactor, as an application's node would at start-up."""

import asyncio
import os
import time

from reactor import Backoff, job

SPANS = os.environ.get("REACTOR_TEST_SPANS")

if SPANS:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    from reactor.tracing import ReactorInstrumentor

    _out = open(SPANS, "a")  # noqa: SIM115 - the node's whole life
    _provider = TracerProvider()
    _provider.add_span_processor(
        SimpleSpanProcessor(
            ConsoleSpanExporter(out=_out, formatter=lambda s: s.to_json(indent=None) + "\n")
        )
    )
    trace.set_tracer_provider(_provider)
    ReactorInstrumentor().instrument()


def _inside(args, where):
    """A span the job's own code makes: a child of the attempt's span when that is current."""
    if SPANS:
        with trace.get_tracer("tests.jobs").start_as_current_span(f"inside {where}"):
            time.sleep(0.001)
    args["where"] = where


@job("traced_ok")
def traced_ok(args):
    _inside(args, "def")


@job("traced_async")
async def traced_async(args):
    await asyncio.sleep(0.001)
    _inside(args, "async")


@job("traced_defer")
def traced_defer(args):
    _inside(args, "defer")


@job("traced_fail", max_attempt=3, backoff=Backoff.linear(0.05))
def traced_fail(args):
    raise ValueError("traced failure")
