"""Hostile bytes on the wire: garbage, huge frames, silent peers, vanished nodes, floods of jobs."""

from __future__ import annotations

import ast
import asyncio
import gc
import itertools
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

import reactor
from reactor import BackPressureError, Config, Distributor, JobFailed, MessageTooLargeError
from reactor.testing.support import NodeProcess, async_wait_until, free_port
from reactor.wire import protocol as P

from .conftest import (
    FAST,
    READ_PEER,
    Cleanup,
    FakeServer,
    MiB,
    attack_listener,
    garbage_frames,
    huge_frame_header,
    random_stream,
    rss,
    start_distributor,
    start_node,
    wait_alive,
    zmtp_greeting,
    zmtp_ready,
)

#: How much a process's resident memory may grow while it fends off the attacks.
RSS_SLACK = 10 * MiB


def attacks(socket_type: bytes, garbage: int = 6 * MiB) -> dict[str, Callable[[], Iterable[bytes]]]:
    """What a hostile peer sends, per attack; ``socket_type`` is the one it pretends to be."""
    hello = [zmtp_greeting(), zmtp_ready(socket_type, b"evil"), READ_PEER]
    return {
        "random bytes": lambda: random_stream(4 * MiB),
        "random bytes after a greeting": lambda: itertools.chain(
            [zmtp_greeting()], random_stream(4 * MiB)
        ),
        "well-framed garbage": lambda: itertools.chain(hello, garbage_frames(garbage)),
        "a frame announcing 2 GiB": lambda: itertools.chain(hello, huge_frame_header()),
    }


async def drained(d: Distributor, quiet: float = 0.3) -> None:
    """Wait until the distributor has rejected everything queued (no new rejection for a while)."""
    assert d._endpoint is not None
    rejected = d._endpoint.rejected
    last, since = -1, time.monotonic()
    while time.monotonic() - since < quiet:
        total = sum(rejected.values())
        if total != last:
            last, since = total, time.monotonic()
        await asyncio.sleep(0.05)


async def test_garbage_from_the_network_does_not_hurt_a_distributor(
    job_dir: Path, config: Config, cleanup: Cleanup
) -> None:
    d = await start_distributor(cleanup, config)
    await start_node(cleanup, "w1", d.address, job_dir, config)
    await wait_alive(d, "w1")
    assert (await asyncio.wait_for(d.enqueue("echo", {"text": "warm"}), 10))["echoed"] == "warm"
    loop = asyncio.get_running_loop()
    gc.collect()
    base = rss()
    growth: dict[str, int] = {}
    accepted: dict[str, int] = {}
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss() - base)
            await asyncio.sleep(0.01)

    watcher = loop.create_task(watch())
    for name, attack in attacks(b"DEALER").items():
        accepted[name] = await loop.run_in_executor(None, attack_listener, d.port, attack, 16 * MiB)
        await drained(d)
        gc.collect()
        growth[name] = rss() - base
        assert growth[name] < RSS_SLACK, f"{name}: RSS grew {growth[name] / MiB:.1f} MiB"
    watcher.cancel()
    print("distributor RSS growth (MiB):", {k: round(v / MiB, 2) for k, v in growth.items()})
    print(f"distributor RSS peak growth: {peak / MiB:.2f} MiB")
    print("bytes sent until hung up (MiB):", {k: round(v / MiB, 2) for k, v in accepted.items()})
    assert accepted["well-framed garbage"] >= 6 * MiB  # all of it went through the decoder
    assert d.snapshot()["rejected_frames"][repr(b"evil")] > 1000
    result = await asyncio.wait_for(d.enqueue("echo", {"text": "after"}), 10)
    assert result["echoed"] == "after"


async def test_garbage_from_a_fake_distributor_does_not_hurt_a_node(
    job_dir: Path, config: Config, cleanup: Cleanup, tmp_path: Path
) -> None:
    port = free_port()
    server = FakeServer(port, lambda: ())  # hangs up at once until armed
    try:
        proc = cleanup.add(
            NodeProcess(
                "w1",
                [f"127.0.0.1:{port}"],
                jobs=job_dir,
                settings=FAST,
                log_path=tmp_path / "w1.log",
            )
        )
        await async_wait_until(lambda: server.connections >= 2, 20, message="node never dialed")
        await asyncio.sleep(0.3)
        base = rss(proc.pid)
        rotation = list(attacks(b"ROUTER", garbage=4 * MiB).values())
        turns = itertools.count()
        armed = server.connections + 1
        server.attack = lambda: rotation[next(turns) % len(rotation)]()
        await async_wait_until(
            lambda: server.connections >= armed + len(rotation) + 2, 30, message="no redial"
        )
    finally:
        server.close()
    await asyncio.sleep(0.3)
    assert proc.proc.poll() is None, proc.output()[-2000:]
    growth = rss(proc.pid) - base
    hostile = server.connections - armed + 1
    print(f"node RSS growth: {growth / MiB:.2f} MiB after {hostile} hostile connections")
    print(f"  that sent it {server.sent / MiB:.1f} MiB")
    assert growth < RSS_SLACK, f"node RSS grew {growth / MiB:.1f} MiB"
    assert server.sent > 6 * MiB
    d = await start_distributor(cleanup, config, port=port)
    await wait_alive(d, "w1")
    result = await asyncio.wait_for(d.enqueue("echo", {"text": "after"}), 10)
    assert result["echoed"] == "after"


async def test_a_silent_tcp_client_is_dropped_by_the_handshake_timeout(
    config: Config, cleanup: Cleanup
) -> None:
    d = await start_distributor(cleanup, config)
    loop = asyncio.get_running_loop()

    async def time_to_hang_up(first: bytes) -> float:
        sock = socket.create_connection(("127.0.0.1", d.port))
        sock.setblocking(False)
        started = time.monotonic()
        try:
            if first:
                await loop.sock_sendall(sock, first)
            while await asyncio.wait_for(loop.sock_recv(sock, 4096), 15):
                pass
        except ConnectionResetError:
            pass
        finally:
            sock.close()
        return time.monotonic() - started

    silent, stalled = await asyncio.gather(
        time_to_hang_up(b""), time_to_hang_up(zmtp_greeting()[:10])
    )
    # zmq.HANDSHAKE_IVL is 5 s: not at once, and not never.
    assert 4.0 < silent < 9.0
    assert 4.0 < stalled < 9.0


async def test_a_send_to_a_vanished_node_routes_new_jobs_elsewhere_at_once(
    job_dir: Path, cleanup: Cleanup, tmp_path: Path
) -> None:
    # A heartbeat timeout of a minute: only ROUTER_MANDATORY's EHOSTUNREACH can notice in time.
    # The node is not declared gone for it (a dropped pipe may be a reconnect: DESIGN §3), but it
    # gets no new jobs until it is heard again.
    config = Config(
        **{**FAST, "heartbeat_timeout": 60.0, "node_lost_after": 120.0},
        merge_job_itself_to_args=True,
    )
    d = await start_distributor(cleanup, config)
    proc = cleanup.add(
        NodeProcess("w1", [d.address], jobs=job_dir, settings=FAST, log_path=tmp_path / "w1.log")
    )
    await wait_alive(d, "w1")
    w2 = await start_node(cleanup, "w2", d.address, job_dir, config)
    await wait_alive(d, "w2")
    killed = time.monotonic()
    proc.kill()
    view = {n["name"]: n for n in d.snapshot()["nodes"]}
    await async_wait_until(
        lambda: not {n["name"]: n for n in d.snapshot()["nodes"]}["w1"]["connected"], 5
    )
    results = await asyncio.wait_for(
        asyncio.gather(*(d.enqueue("echo", {"text": str(i)}) for i in range(10))), 10
    )
    assert {r["ran_on"] for r in results} == {"w2"}
    assert time.monotonic() - killed < 5
    assert view["w1"]["alive"] and w2.stats["received"] >= 10


async def test_the_in_flight_window_and_the_waiting_buffer_are_bounded(
    job_dir: Path, cleanup: Cleanup
) -> None:
    config = Config(**{**FAST, "max_waiting_jobs": 4})
    d = await start_distributor(cleanup, config)
    node = await start_node(cleanup, "w1", d.address, job_dir, config, capacity=2)
    await wait_alive(d, "w1")
    running = [d.enqueue("slow", {"delay": 0.6}) for _ in range(2)]
    await async_wait_until(lambda: node.snapshot()["running"] == 2)
    waiting = [d.enqueue("slow", {"delay": 0.1}) for _ in range(4)]
    with pytest.raises(BackPressureError, match="4 jobs already wait"):
        d.enqueue("slow", {"delay": 0.1})
    await asyncio.sleep(0.2)
    view = d.snapshot()
    assert view["waiting"] == 4 and view["in_flight"] == 2
    assert view["nodes"][0]["load"] == 2
    assert node.snapshot()["held"] == 2 and node.stats["received"] == 2
    results = await asyncio.wait_for(asyncio.gather(*running, *waiting), 15)
    assert all(r["slept"] for r in results)
    assert node.stats["received"] == 6


async def test_an_oversized_enqueue_raises_before_anything_is_sent(
    job_dir: Path, cleanup: Cleanup
) -> None:
    config = Config(**{**FAST, "max_message_size": 64 * 1024})
    d = await start_distributor(cleanup, config)
    node = await start_node(cleanup, "w1", d.address, job_dir, config)
    await wait_alive(d, "w1")
    with pytest.raises(MessageTooLargeError, match="over the"):
        d.enqueue("echo", {"text": "x" * 100_000})
    deep: dict[str, Any] = {"text": 1}
    for _ in range(40):
        deep = {"k": deep}
    with pytest.raises(TypeError, match="nested"):
        d.enqueue("echo", deep)
    with pytest.raises(TypeError, match="int key"):
        d.enqueue("echo", {"counts": {200: 1}})
    await asyncio.sleep(0.3)
    peer = P.routing_id("w1", node.session)
    assert d._endpoint is not None and d._endpoint.pending(peer) == 0
    assert d.snapshot()["in_flight"] == 0 and d.snapshot()["waiting"] == 0 and not d.core.jobs  # type: ignore[union-attr]
    assert node.stats["received"] == 0
    result = await asyncio.wait_for(d.enqueue("echo", {"text": "small"}), 10)
    assert result["echoed"] == "small" and node.stats["received"] == 1


@pytest.mark.parametrize(
    "name", ["os.system", "builtins.eval", "__import__", "../jobs/echo", "jobs.echo", "echo "]
)
async def test_a_job_name_only_ever_resolves_to_a_registered_job(
    name: str, job_dir: Path, config: Config, cleanup: Cleanup
) -> None:
    d = await start_distributor(cleanup, config)
    await start_node(cleanup, "w1", d.address, job_dir, config)
    await wait_alive(d, "w1")
    with pytest.raises(JobFailed) as failed:
        await asyncio.wait_for(d.enqueue(name, {"cmd": "touch /tmp/pwned"}), 10)
    assert failed.value.type_name == "NoSuchJob"
    assert (await asyncio.wait_for(d.enqueue("echo", {"text": "ok"}), 10))["echoed"] == "ok"


async def test_rejections_are_counted_per_peer_and_logged_without_payload(
    config: Config, cleanup: Cleanup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "reactor")
    d = await start_distributor(cleanup, config)
    canary = "s3cr3t-CANARY-7f1d"
    secret = canary.encode()
    bad_frames = [
        secret,  # not msgpack at all
        msgpack.packb(canary) + secret,  # not an array, and trailing bytes
        msgpack.packb([[99, canary]]),  # an unknown kind
        msgpack.packb([[P.HEARTBEAT, canary, canary]]),  # a field of the wrong type
        msgpack.packb([msgpack.ExtType(5, secret)]),  # an extension type
        b"\x91\x92\x0b\xb4" + secret + b"\xff\xfe",  # invalid UTF-8 right after the canary
        msgpack.packb([{canary: 1}]),  # a map in the envelope
        b"\x91\xdb\xff\xff\xff\xff" + secret,  # a string header announcing 4 GiB
    ]
    ctx = zmq.Context.instance()
    peers = {}
    for identity in (b"evil-1", b"evil-2"):
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(f"tcp://{d.address}")
        peers[identity] = sock
    try:
        for frame in bad_frames:
            peers[b"evil-1"].send(frame)
        peers[b"evil-2"].send(bad_frames[0])
        # A well-formed feedback from an unknown node, with args that do not decode.
        bad_args = msgpack.packb({"k": msgpack.ExtType(1, secret)})
        peers[b"evil-2"].send(
            P.Codec().encode([P.Feedback("job-1", 1, 1, P.SUCCESS, True, bad_args, None)])
        )
        rejected = d._endpoint.rejected if d._endpoint else {}
        await async_wait_until(
            lambda: (
                rejected.get(repr(b"evil-1")) == len(bad_frames)
                and rejected.get(repr(b"evil-2")) == 1
            ),
            10,
            message=f"rejected counts: {dict(rejected)}",
        )
        await async_wait_until(lambda: "unknown node 'evil-2'" in caplog.text, 5)
    finally:
        for sock in peers.values():
            sock.close(linger=0)
    assert d.snapshot()["rejected_frames"] == {repr(b"evil-1"): 8, repr(b"evil-2"): 1}
    assert "dropped a message from b'evil-1'" in caplog.text
    for form in (canary, secret.hex(), repr(secret)[2:-1], canary[:8]):
        assert form not in caplog.text


# -- no code execution from data ------------------------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}


def test_reactor_never_imports_pickle_or_marshal_nor_calls_eval() -> None:
    root = Path(reactor.__file__).parent
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                names = [node.func.id]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n in FORBIDDEN_MODULES]
            found += [f"{path.name}:{node.lineno} {n}()" for n in names if n in ("eval", "exec")]
    assert found == []


def test_ruff_security_rules_pass_on_reactor() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    root = Path(reactor.__file__).parent
    done = subprocess.run(  # the project's ruff settings select the bandit rules ("S")
        [ruff, "check", "--no-cache", str(root)],
        cwd=root.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
