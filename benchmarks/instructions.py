"""The ``instructions`` case: instructions per job, end to end, counted by callgrind.

A distributor and a memory node share one process (``benchmarks.metrics_overhead``: N trivial
``def`` jobs, both sides of every message); callgrind counts the instructions of a run of
``SMALL`` jobs and of ``SMALL + STEP`` jobs, and their difference over ``STEP`` is the cost of
one job with start-up taken out. Instruction counts do not depend on the machine's load, so the
figure holds across machines and runs (issue 19: 330k per job at the start of wave 3, target
150k). Opt-in (``python -m benchmarks --only instructions``): callgrind runs the interpreter about
50 times slower, so the two runs take a few minutes. Without valgrind on PATH the case reports
why and is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import ROOT, Options, Result
from benchmarks.services import Services

SMALL, STEP = 2_000, 10_000
_SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def count(jobs: int, scratch: Path) -> int:
    """Instructions callgrind counts for a run of ``jobs`` jobs (every thread of the process)."""
    out = scratch / f"cg.{jobs}"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.metrics_overhead",
        str(jobs),
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=1800)
    match = _SUMMARY.search(out.read_text(errors="replace"))
    if match is None:
        raise RuntimeError(f"no summary line in {out}")
    return int(match.group(1))


def instructions(opts: Options, services: Services) -> Result:
    """Instructions per job by difference of two callgrind runs."""
    if shutil.which("valgrind") is None:
        return Result(
            "instructions", False, {}, "valgrind is not on PATH (apt-get install valgrind)"
        )
    step = STEP // 10 if opts.quick else STEP
    with tempfile.TemporaryDirectory(prefix="reactor-cg-") as scratch:
        small = count(SMALL, Path(scratch))
        large = count(SMALL + step, Path(scratch))
    per_job = (large - small) / step
    return Result(
        "instructions",
        True,
        {"instructions_per_job": round(per_job), "jobs": step, "small_run_instructions": small},
    )
