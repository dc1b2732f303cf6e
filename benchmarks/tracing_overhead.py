"""CPU per job of OpenTelemetry tracing: a distributor and a node in one process run N trivial
``def`` jobs, in a fresh interpreter for each mode, and the process's CPU time (every thread, the
SDK's export thread too) is divided by N.

Modes: ``none`` (not instrumented: the hooks are None), ``api`` (instrumented with
OpenTelemetry's API alone, no SDK: no-op spans), ``sdk_unsampled`` (the SDK with a sampler that
drops every trace), ``sdk_recording`` (the SDK recording every span into a batch processor whose
exporter drops them). Each job makes a ``send``, a ``process`` and a ``feedback`` span when
recorded.

``python -m benchmarks.tracing_overhead [--n 20000] [--repeat 3]`` prints one JSON line per mode
and a table of microseconds of CPU per job; ``--mode M`` runs one mode in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

MODES = ("none", "api", "sdk_unsampled", "sdk_recording")


def _setup(mode: str) -> None:
    """Instrument this process as ``mode`` says."""
    if mode == "none":
        return
    from reactor.tracing import ReactorInstrumentor

    if mode == "api":
        ReactorInstrumentor().instrument()
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ALWAYS_OFF if mode == "sdk_unsampled" else ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(Dropping(), max_queue_size=1 << 16))
    ReactorInstrumentor().instrument(tracer_provider=provider)


async def _run(jobs: int) -> float:
    """Run ``jobs`` trivial jobs after a warm-up; the CPU seconds they took."""
    from reactor import Config, Distributor
    from reactor.jobs.registry import JobRegistry
    from reactor.node.driver import Node

    config = Config(log_job_processing=False)
    distributor = Distributor("127.0.0.1", 0, config=config)
    await distributor.start()
    registry = JobRegistry()
    registry.define("t", _body)
    node = Node("n", distributors=[distributor.address], registry=registry, config=config)
    await node.start()
    await asyncio.gather(*(distributor.enqueue("t", {"i": i}) for i in range(min(jobs, 2000))))
    began = time.process_time()
    batch = 2000  # bounded in flight, as an application would keep it
    for start in range(0, jobs, batch):
        count = min(batch, jobs - start)
        await asyncio.gather(*(distributor.enqueue("t", {"i": i}) for i in range(count)))
    took = time.process_time() - began
    await node.stop()
    await distributor.stop()
    return took


def _body(args: dict[str, Any]) -> None:
    args["ok"] = 1


def run_mode(mode: str, jobs: int) -> dict[str, Any]:
    """Run ``mode`` in this process: its JSON record."""
    _setup(mode)
    seconds = asyncio.run(_run(jobs))
    return {
        "case": "tracing_overhead",
        "mode": mode,
        "jobs": jobs,
        "cpu_us_per_job": round(seconds / jobs * 1e6, 2),
        "otel_imported": "opentelemetry.trace" in sys.modules,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracing_overhead")
    parser.add_argument("--n", type=int, default=20000, help="jobs per run (20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the median (3)")
    parser.add_argument("--mode", choices=MODES, help="run one mode here, print its JSON line")
    ns = parser.parse_args(argv)
    if ns.mode is not None:
        print(json.dumps(run_mode(ns.mode, ns.n)))
        return 0
    rows = []
    for mode in MODES:
        runs = []
        for _ in range(ns.repeat):
            cmd = [sys.executable, "-m", "benchmarks.tracing_overhead", "--mode", mode]
            out = subprocess.run(
                [*cmd, "--n", str(ns.n)], capture_output=True, text=True, check=True
            ).stdout
            runs.append(json.loads(out.strip().splitlines()[-1]))
        record = dict(runs[0])
        record["cpu_us_per_job"] = statistics.median(r["cpu_us_per_job"] for r in runs)
        record["runs"] = [r["cpu_us_per_job"] for r in runs]
        print(json.dumps(record), flush=True)
        rows.append(record)
    base = rows[0]["cpu_us_per_job"]
    print("\n| mode | CPU µs/job (median) | vs not instrumented |\n| --- | ---: | ---: |")
    for record in rows:
        extra = record["cpu_us_per_job"] - base
        print(f"| {record['mode']} | {record['cpu_us_per_job']:.1f} | {extra:+.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
