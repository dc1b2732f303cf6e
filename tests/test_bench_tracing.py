"""Smoke test of ``python -m benchmarks.tracing_overhead`` with tiny sizes: every mode runs and
reports a positive CPU time per job. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODES = ("none", "api", "sdk_unsampled", "sdk_recording")

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_tracing_overhead_reports_every_mode() -> None:
    cmd = [sys.executable, "-m", "benchmarks.tracing_overhead", "--n", "200", "--repeat", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["mode"] for r in records] == list(MODES)
    assert all(r["cpu_us_per_job"] > 0 for r in records), records
    assert "| sdk_recording |" in done.stdout
