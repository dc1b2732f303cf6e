"""The result store: outcomes written by the enqueuing distributor, read by another process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reactor import Config, Distributor, JobTimeoutError
from reactor.storage.client import make_client
from reactor.storage.results import result_key, wait_result

from ..conftest import FAST, NodeFactory, Recorder, wait_for_node

pytestmark = pytest.mark.redis

#: Another process: reads the outcomes with JR.result, one JSON line each.
READER = """
import json, sys
import reactor as JR

url, ids = sys.argv[1], sys.argv[2:]
JR.config["redis_url"] = url
print("ready", flush=True)
for job_id in ids:
    try:
        print(json.dumps({"ok": JR.result(job_id, timeout=30)}), flush=True)
    except JR.JobFailed as exc:
        print(json.dumps({"error": exc.type_name, "message": exc.message,
                          "traceback": exc.traceback}), flush=True)
JR.stop()
"""


async def test_result_from_a_second_process(
    start_node: NodeFactory, redis_url: str, tmp_path: Path
) -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), result_store=redis_url)
    await d.start()
    proc = start_node("w1", [d.address], settings={"max_attempt": 1})
    await wait_for_node(d, "w1", proc=proc)
    success = Recorder()
    errors = Recorder()
    # Deferred, so the reader is already waiting when the outcomes are written (pushed to it).
    ok = d.enqueue("where", {"n": 7}, after=1.0, on_success=success)
    bad = d.enqueue("failing", {"path": str(tmp_path / "notes")}, after=1.0, on_error=errors)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, redis_url, ok.id, bad.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = await asyncio.to_thread(reader.communicate, timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    assert reader.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "ready"
    first, second = (json.loads(line) for line in lines[1:])
    assert first["ok"]["n"] == 7 and first["ok"]["thread"]  # the final args, set by the job
    assert second["error"] == "NameError" and "undefined_name" in second["message"]
    assert "Traceback" in second["traceback"]
    # Feedback callables ran here, in the enqueuing process, once each.
    assert [a["n"] for a in success.args] == [7] and len(errors.args) == 1

    client = make_client(redis_url)
    try:
        ttl = await client.pttl(result_key(ok.id))
        assert 0 < ttl <= 86400 * 1000
        assert (await wait_result(client, ok.id, timeout=1))["n"] == 7  # read again: kept
        with pytest.raises(JobTimeoutError):
            await wait_result(client, "no-such-job", timeout=0.3)
    finally:
        await client.aclose()
        await d.stop()


async def test_discovery_outbox_and_results_on_a_redis_cluster(
    start_node: NodeFactory, redis_cluster_url: str
) -> None:
    url = redis_cluster_url
    d = Distributor(
        "127.0.0.1",
        0,
        config=Config(**FAST),
        announce=url,
        group="web",
        outbox=url,
        result_store=url,
    )
    await d.start()
    proc = start_node("w1", [], extra=["--discover", url])
    await wait_for_node(d, "w1", proc=proc)
    handles = [d.enqueue("where", {"n": i}) for i in range(20)]
    for handle in handles:
        await asyncio.wait_for(handle, 10)
    client = make_client(url)
    try:
        got = [(await wait_result(client, h.id, timeout=10))["n"] for h in handles]
        assert got == list(range(20))
    finally:
        await client.aclose()
    outbox = d._outbox
    assert outbox is not None and outbox.stats["written"] == 20
    await d.stop()
