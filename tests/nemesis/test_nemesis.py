"""The nemesis in CI (issue 18): two minutes of random faults on a fixed seed, as a subprocess.

``python -m tests.nemesis --minutes 2 --seed 18 --kinds <all but app_kill>`` must end with a
clean JSON line: nothing lost, no duplicate or phantom outcome, ``not_node`` never violated, and
jobs and faults there were. The schedule it ran is in the captured output (``-s`` shows it
live); the seed replays it.

``app_kill`` (SIGKILL of an application, restarted on its address) is left out of CI's mix until
a known loss is fixed: a node re-sends a final feedback meant for the killed application to its
successor on the same address, which acknowledges it as unknown (``feedback_unknown``); the node
then drops it without keeping it in the result store, so the job has no outcome anywhere (the
full mix loses about one job in two runs of this seed; ``--kinds app_kill,redis_restart --seed
5`` lost three). Put it back (drop ``KINDS_IN_CI``) once fixed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nemesis.schedule import KINDS
from tests.redis.conftest import require_redis_server

ROOT = Path(__file__).resolve().parents[2]
SEED = 18
MINUTES = 2
#: Every fault kind but app_kill (see the module docstring).
KINDS_IN_CI = [kind for kind in KINDS if kind != "app_kill"]

pytestmark = [pytest.mark.nemesis, pytest.mark.redis, pytest.mark.slow]


@pytest.mark.timeout(MINUTES * 60 + 420)
def test_two_minutes_of_random_faults_lose_nothing() -> None:
    require_redis_server()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.nemesis", "--minutes", str(MINUTES)),
            *("--seed", str(SEED), "--kinds", ",".join(KINDS_IN_CI)),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: on a timeout, nothing it started outlives it
    )
    try:
        stdout, stderr = proc.communicate(timeout=MINUTES * 60 + 400)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the runner kills what it started (by PID) and removes its directory
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
    print(stdout[-20000:])
    lines = stdout.strip().splitlines()
    assert lines, f"the nemesis printed nothing:\n{stderr[-3000:]}"
    result = json.loads(lines[-1])
    kinds = ",".join(KINDS_IN_CI)
    replay = f"replay: python -m tests.nemesis --minutes {MINUTES} --seed {SEED} --kinds {kinds}"
    assert result["accepted"] > 0 and result["faults"] > 0, (result, replay)
    assert result["lost"] == 0, (result, replay)
    assert result["duplicate_outcomes"] == 0, (result, replay)
    assert result["phantom_outcomes"] == 0, (result, replay)
    assert result["not_node_violations"] == 0, (result, replay)
    assert proc.returncode == 0, (result, replay, stderr[-3000:])
