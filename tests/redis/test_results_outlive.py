"""Issue 18: a result outlives the process that enqueued the job.

An application enqueues a 1.5 s job with ``result_store=`` and then goes away: it exits normally
once a node has stored the job, or is SIGKILLed (without an outbox; or with one, and restarted on
its address as a member of its group: a new session, which the node's feedback cannot go to).
The node, which has the result store too (``config["result_store"]``), keeps the final outcome
its distributor will never hear of; a third process reads it with ``JR.result``. Memory and
Redis node storage.

``kill-restart``: the application is SIGKILLed and started again on its address (no outbox)
before the job ends, so the node's feedback reaches the new distributor before the node knows of
the restart. The new one acknowledged it as a stranger's, and the outcome was dropped (found by
the nemesis); now it asks the node to say hello, and the node keeps the outcome in the store.

``kill-deferred``: the job is due after the node's lease from the dead application lapsed, so
the node held it for a sync that never came, forever (as did a job that arrived just before the
application died, before its sync: ``kill`` failed about one run in twenty). A node runs the jobs
of a distributor silent past ``node_lost_after`` on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from reactor.errors import JobTimeoutError
from reactor.storage.client import make_client
from reactor.storage.results import result_key, wait_result
from reactor.testing.support import NodeProcess, free_port

from ..conftest import FAST, NodeFactory

pytestmark = pytest.mark.redis

#: The application: enqueue one job, print its id once a node stored it, then exit or wait.
APP = """
import json, sys, time
import reactor as JR

url, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
JR.config.update(heartbeat_interval=0.2, heartbeat_timeout=2.0)
extra = {"outbox": url, "group": "shop"} if mode in ("kill-outbox", "rejoin") else {}
JR.start_distributor("127.0.0.1", port, result_store=url, **extra)
if mode in ("rejoin", "restart"):
    print(json.dumps({"rejoined": True}), flush=True)
    time.sleep(600)
# kill-restart: the job ends while the application is dead, before its successor is up
seconds = 0.3 if mode in ("kill-restart", "kill-deferred") else 1.5
# kill-deferred: due once the node's lease from the dead application has lapsed
after = 2.5 if mode == "kill-deferred" else 0
handle = JR.enqueue("async_sleep", {"seconds": seconds, "who": "app"}, after=after)
if JR.drain(timeout=20) != 0:
    sys.exit("the job was not stored")
print(json.dumps({"id": handle.id}), flush=True)
if mode.startswith("kill"):
    time.sleep(600)  # SIGKILLed here, while the job runs
"""


async def _app_job(
    redis_url: str, start_node: NodeFactory, storage: str, mode: str, **node_settings: float
) -> tuple[str, subprocess.Popen[str], tuple[NodeProcess, int]]:
    """Start the application and a node dialing it; the id of the job once stored."""
    port = free_port()
    # node_lost_after: a node whose application died before it confirmed the job (its sync)
    # runs the job on its own once the application has been silent that long.
    settings = {**FAST, "result_store": redis_url, "node_lost_after": 3.0, **node_settings}
    node = start_node("w1", [f"127.0.0.1:{port}"], storage=storage, settings=settings)
    app, line = await _app(redis_url, port, mode)
    return json.loads(line)["id"], app, (node, port)


async def _app(redis_url: str, port: int, mode: str) -> tuple[subprocess.Popen[str], str]:
    """The application process, and the first line it printed."""
    app = subprocess.Popen(
        [sys.executable, "-c", APP, redis_url, str(port), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert app.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(app.stdout.readline), 30)
    if not line:
        raise AssertionError(f"the application failed: {app.communicate()[1][-2000:]}")
    return app, line


@pytest.mark.parametrize("storage", ["memory", "redis"])
@pytest.mark.parametrize("mode", ["exit", "kill", "kill-outbox", "kill-restart", "kill-deferred"])
async def test_the_result_reaches_the_store_after_the_enqueuer_is_gone(
    redis_url: str, start_node: NodeFactory, storage: str, mode: str
) -> None:
    node_storage = redis_url if storage == "redis" else "memory"
    job_id, app, (node, port) = await _app_job(redis_url, start_node, node_storage, mode)
    again = None
    try:
        if mode.startswith("kill"):
            app.send_signal(signal.SIGKILL)
        await asyncio.to_thread(app.wait, 30)
        assert mode.startswith("kill") or app.returncode == 0, app.communicate()[1][-2000:]
        if mode == "kill-outbox":
            again, _ = await _app(redis_url, port, "rejoin")
        elif mode == "kill-restart":  # on its address within a heartbeat: the nemesis's bug 1
            again, _ = await _app(redis_url, port, "restart")
        client = make_client(redis_url)
        try:
            # The job's 1.5 s, the node noticing its distributor is gone (heartbeat_timeout 2 s).
            try:
                result = await wait_result(client, job_id, timeout=15)
            except JobTimeoutError:
                raise AssertionError(
                    f"no result; the node said:\n{node.output()[-3000:]}"
                ) from None
            assert await client.exists(result_key(job_id)) == 1
        finally:
            await client.aclose()
    finally:
        for proc in (app, again):
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.communicate()
    seconds = 0.3 if mode in ("kill-restart", "kill-deferred") else 1.5
    assert result["who"] == "app" and result["finished"] - result["began"] >= seconds - 0.1


async def test_a_result_read_by_a_third_process_with_jr_result(
    redis_url: str, start_node: NodeFactory
) -> None:
    job_id, app, _ = await _app_job(redis_url, start_node, "memory", "exit")
    await asyncio.to_thread(app.communicate, timeout=30)
    reader = (
        "import json, sys, reactor as JR\n"
        "JR.config['redis_url'] = sys.argv[1]\n"
        "print(json.dumps(JR.result(sys.argv[2], timeout=15)))\n"
    )
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", reader, redis_url, job_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1])["who"] == "app"


async def test_the_node_keeps_the_outcome_as_the_job_ends_not_when_its_lease_lapses(
    redis_url: str, start_node: NodeFactory
) -> None:
    """The nemesis's bug 2: a node kept an outcome nobody acknowledged only once its lease from
    the dead application lapsed (heartbeat_timeout), so a node killed in between took the only
    copy along. Here the lease lasts 30 s and the result must be there long before."""
    job_id, app, (node, _) = await _app_job(
        redis_url, start_node, redis_url, "kill", heartbeat_timeout=30.0, node_lost_after=60.0
    )
    app.send_signal(signal.SIGKILL)
    await asyncio.to_thread(app.communicate, timeout=30)
    client = make_client(redis_url)
    try:
        try:
            result = await wait_result(client, job_id, timeout=10)  # the job takes 1.5 s
        except JobTimeoutError:
            raise AssertionError(f"no result; the node said:\n{node.output()[-3000:]}") from None
        node.proc.kill()  # what the nemesis did: the outcome is in Redis, not only in the node
        await asyncio.to_thread(node.proc.wait, 30)
        assert await client.exists(result_key(job_id)) == 1
    finally:
        await client.aclose()
    assert result["who"] == "app"
