"""``/healthz`` and ``/readyz`` on the metrics port (DESIGN §11), on real node processes and an
in-process distributor, and the liveness rule on a loop held by this test."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time

import pytest

from reactor import Config, Distributor
from reactor.ops.health import Health
from reactor.ops.metrics import Metrics
from reactor.testing.support import free_port, wait_until

from .conftest import FAST, NodeFactory, wait_for_node


def probe(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` on the metrics port: the status and the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


async def aprobe(port: int, path: str) -> tuple[int, str]:
    """:func:`probe` off the test's loop (the in-process distributor answers pings there)."""
    return await asyncio.to_thread(probe, port, path)


async def wait_probe(port: int, path: str, status: int, timeout: float = 15.0) -> str:
    """Poll ``path`` until it answers ``status``; the body."""
    seen: list[tuple[int, str]] = []

    async def check() -> bool:
        try:
            seen.append(await aprobe(port, path))
        except OSError:
            return False
        return seen[-1][0] == status

    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{path} never answered {status}: {seen[-3:]}"
        await asyncio.sleep(0.1)
    return seen[-1][1]


async def test_a_node_is_ready_once_a_distributor_welcomed_it(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    port = free_port()
    proc = start_node("h1", [distributor.address], extra=["--metrics-port", str(port)])
    await wait_for_node(distributor, "h1", proc=proc)
    assert "ready" in await wait_probe(port, "/readyz", 200)
    status, text = await aprobe(port, "/healthz")
    assert status == 200 and text.startswith("ok"), text
    status, text = await aprobe(port, "/metrics")  # still served beside the probes
    assert status == 200 and "reactor_jobs_started_total" in text


async def test_a_node_no_distributor_welcomed_is_alive_but_not_ready(
    start_node: NodeFactory,
) -> None:
    port = free_port()
    nobody = f"127.0.0.1:{free_port()}"
    start_node("h2", [nobody], extra=["--metrics-port", str(port)])
    text = await wait_probe(port, "/readyz", 503)
    assert "no distributor has welcomed the node" in text
    status, text = await aprobe(port, "/healthz")
    assert status == 200, text


async def test_a_def_job_holding_the_loop_leaves_the_node_alive_but_not_ready(
    distributor: Distributor, start_node: NodeFactory
) -> None:
    port = free_port()
    proc = start_node(
        "h3",
        [distributor.address],
        extra=["--metrics-port", str(port)],
        settings={"hand_back_after": 0.3},
    )
    await wait_for_node(distributor, "h3", proc=proc)
    await wait_probe(port, "/readyz", 200)
    handle = distributor.enqueue("block", {"seconds": 6.0})
    text = await wait_probe(port, "/readyz", 503, timeout=4.0)
    assert "a def job holds the node's loop" in text
    status, text = await aprobe(port, "/healthz")
    assert status == 200 and "def job 'block'" in text, text
    await handle
    await wait_probe(port, "/readyz", 200, timeout=10.0)  # ready again once the job returned


async def test_a_distributor_is_ready_while_bound() -> None:
    port = free_port()
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), metrics_port=port)
    await d.start()
    try:
        status, text = await aprobe(port, "/readyz")
        assert status == 200 and "ready" in text
        status, text = await aprobe(port, "/healthz")
        assert (status, text) == (200, "ok: the event loop answers\n")
    finally:
        await d.stop()
    with pytest.raises(OSError):  # stopping closes the server
        probe(port, "/healthz")


def test_liveness_fails_once_a_ping_stays_unanswered_past_the_stale_time() -> None:
    loop = asyncio.new_event_loop()
    release = threading.Event()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        health = Health(loop, ready=lambda: None, stale_after=0.4, ping_wait=5.0)
        assert health.live() == (True, "ok: the event loop answers")
        assert health.ready() == (True, "ok: ready")
        health.ping_wait = 0.05
        loop.call_soon_threadsafe(release.wait, 5)  # something that is not a def job holds it
        alive, text = health.live()  # the ping queues behind it: unanswered after ping_wait
        assert alive and "has not answered" in text  # slow, not yet hung
        seen: list[tuple[bool, str]] = []

        def stale() -> bool:  # the ping unanswered past stale_after (0.4 s)
            seen.append(health.live())
            return not seen[-1][0]

        wait_until(stale, 5)
        alive, text = seen[-1]
        assert not alive and "has not answered for" in text
        assert health.ready()[0] is False
        health.holder = lambda: "def job 'x' (1) holds the loop for 0.6 s"
        assert health.live() == (True, "ok: def job 'x' (1) holds the loop for 0.6 s")
        release.set()
        health.holder = lambda: None
        health.ping_wait = 5.0
        assert health.live() == (True, "ok: the event loop answers")
    finally:
        release.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_the_server_answers_503_with_the_reason_and_serves_metrics_elsewhere() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        health = Health(loop, ready=lambda: "no distributor has welcomed the node")
        server = Metrics().serve(0, health=health)
        try:
            assert probe(server.port, "/readyz") == (
                503,
                "no distributor has welcomed the node\n",
            )
            assert probe(server.port, "/healthz")[0] == 200
            status, text = probe(server.port, "/metrics")
            assert status == 200 and "reactor_in_flight" in text
        finally:
            server.close()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
