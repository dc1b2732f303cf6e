"""Smoke test of the benchmark suite: ``reactor bench`` with tiny sizes runs every reactor case,
prints a JSON line for each with positive figures, and verifies that every job ran exactly once.
No timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Figures each case must report as positive numbers.
POSITIVE = {
    "drain_memory": ["jobs_per_s", "ran_total"],
    "drain_redis": ["jobs_per_s", "ran_total"],
    "enqueue": ["threads_1_per_s", "threads_4_per_s", "threads_1_no_node_per_s", "ran_total"],
    "latency": ["start_p50_ms", "feedback_p50_ms", "feedback_max_ms", "ran_total"],
    "start_latency": ["max_jobs_per_s", "rate_per_s", "start_p50_ms", "start_p99_ms", "ran_total"],
    "timers": ["late_max_ms", "ran_total"],
    "memory_node": ["node_bytes_per_job"],
    "memory_distributor": ["distributor_bytes_per_job"],
    "idle": ["sim_messages_per_s", "sim_cpu_us_per_link_s", "node_cpu_pct"],
    "cpu_bound": ["processes_1_jobs_per_s", "processes_2_jobs_per_s", "speedup", "ran_total"],
    "limits": ["plain_jobs_per_s", "concurrency_key_jobs_per_s", "rate_limit_jobs_per_s"],
}
VERIFIED = {"drain_memory", "drain_redis", "enqueue", "latency", "start_latency", "timers"}
VERIFIED |= {"cpu_bound"}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_quick_run_reports_every_case() -> None:
    with_redis = shutil.which("redis-server") is not None
    if not with_redis and os.environ.get("CI") == "true":
        pytest.fail("redis-server is not on PATH, and CI=true requires the Redis cases")
    cmd = [sys.executable, "-m", "reactor", "bench", "--quick", "--n", "500", "--skip-peers"]
    cmd += ["--latency-n", "100", "--timer-n", "100", "--memory-n", "5000"]
    if not with_redis:
        cmd.append("--skip-redis")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=360, check=False)
    lines: dict[str, dict[str, Any]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            lines[record["case"]] = record
    expected = set(POSITIVE) if with_redis else set(POSITIVE) - {"drain_redis"}
    assert set(lines) == expected, (done.stdout, done.stderr[-3000:])
    for case, record in lines.items():
        assert record["ok"], record
        for key in POSITIVE[case]:
            assert record[key] > 0, (case, key, record)
        if case in VERIFIED:
            assert record["exactly_once"] is True, record
            assert record["ran_total"] == record["ran_distinct"] == record["feedbacks"], record
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| reactor" in done.stdout  # the table


def test_the_instructions_case_runs_only_when_named() -> None:
    """callgrind takes minutes: a plain run leaves the case out, ``--only instructions`` runs it."""
    from benchmarks.cli import build_parser, options, selected

    plain = selected(options(build_parser().parse_args(["--skip-peers", "--skip-redis"])))
    named = selected(options(build_parser().parse_args(["--only", "instructions"])))
    assert "instructions" not in plain and "drain_memory" in plain
    assert named == ["instructions"]
