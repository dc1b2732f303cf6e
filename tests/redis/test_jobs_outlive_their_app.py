"""A job stored by a node runs even when the application that enqueued it exits at once
(DESIGN §3 "Applications that stop"; issue 18).

A script enqueues a few jobs (at once, deferred, and a retrying one) and exits: by the
interpreter's normal exit or ``JR.stop()``. Its drain returns as soon as the node stored them,
often before the node's link to it is synced; the node may run a job only under its
distributor's lease, which nobody renews any more. Before the goodbye, every one of these jobs
waited forever; now the stopping distributor says bye, the node takes the jobs as its own, and
they all run, with memory and with Redis storage.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reactor.testing import free_port, wait_until

from ..conftest import FAST, NodeFactory, lines

pytestmark = pytest.mark.redis


def _script(port: int, path: Path, ending: str) -> str:
    return textwrap.dedent(
        f"""
        import time
        import reactor as JR
        JR.config.update(heartbeat_interval=0.2, heartbeat_timeout=2.0, drain_timeout=60)
        JR.start_distributor("127.0.0.1", {port})
        JR.enqueue("record", {{"path": {str(path)!r}, "tag": "now"}})
        JR.enqueue("record", {{"path": {str(path)!r}, "tag": "deferred"}}, after=3)
        JR.enqueue("record", {{"path": {str(path)!r}, "tag": "at"}}, run_at=time.time() + 2)
        JR.enqueue("async_sleep", {{"path": {str(path)!r}, "seconds": 1.0}})
        print("enqueued", time.monotonic(), flush=True)
        """
    ) + textwrap.dedent(ending)


@pytest.mark.parametrize("storage", ["memory", "redis"])
@pytest.mark.parametrize("ending", ["", "print('lost', JR.stop())\n"], ids=["exit", "JR.stop"])
def test_jobs_of_an_application_that_exited_at_once_all_run(
    tmp_path: Path, start_node: NodeFactory, redis_url: str, storage: str, ending: str
) -> None:
    node_storage = redis_url if storage == "redis" else "memory"
    port = free_port()
    path = tmp_path / "ran.txt"
    node = start_node("w1", [f"127.0.0.1:{port}"], storage=node_storage, settings=FAST)
    out = subprocess.run(
        [sys.executable, "-c", _script(port, path, ending)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exited = time.monotonic()
    assert out.returncode == 0, out.stderr[-3000:]
    assert "they are lost" not in out.stderr
    if ending:
        assert "lost 0" in out.stdout

    def tags() -> set[str]:
        return {line.split()[0] for line in lines(path)}

    expected = {"now", "deferred", "at", "start"}
    wait_until(
        lambda: expected <= tags(),
        20,
        message=f"ran only {sorted(tags())}; the node said:\n{node.output()[-2000:]}",
    )
    assert "stopped" in node.output()  # the node heard the bye, not a silence
    print(f"all ran within {time.monotonic() - exited:.1f}s of the application's exit")
