"""CURVE: opt-in encryption and authentication that fails closed, with names bound to keys."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
from pathlib import Path
from typing import Any

import pytest
import zmq

from reactor import Config, ConfigError
from reactor.cli import main as cli
from reactor.net.security import ZAP_HANDLERS, CurveServer, read_key_file
from reactor.testing.support import NodeProcess, async_wait_until
from reactor.wire import protocol as P

from .conftest import (
    FAST,
    Cleanup,
    Keys,
    Relay,
    alive_nodes,
    start_distributor,
    start_node,
    wait_alive,
)


@pytest.fixture
def config() -> Config:
    return Config(**{**FAST, "merge_job_itself_to_args": True})


def test_keys_generate_writes_a_key_pair_only_its_owner_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["keys", "generate", str(tmp_path / "k"), "--name", "w9"]) == 0
    public, secret = tmp_path / "k" / "w9.key", tmp_path / "k" / "w9.key_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    pub_key, no_secret = read_key_file(public)
    same_pub, secret_key = read_key_file(secret)
    assert no_secret is None and secret_key is not None and same_pub == pub_key
    assert str(public) in capsys.readouterr().out
    assert cli(["keys", "generate", str(tmp_path / "k"), "--name", "w9"]) == 2
    assert "already exists" in capsys.readouterr().err  # errors go to stderr
    assert read_key_file(public)[0] == pub_key
    assert cli(["keys", "generate", str(tmp_path / "k"), "--name", "w9", "--force"]) == 0
    assert read_key_file(public)[0] != pub_key
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert cli(["keys", "generate", str(tmp_path / "k"), "--name", "../escape"]) == 2
    assert not (tmp_path / "escape.key").exists()


def misconfigure(keys: Keys, how: str) -> tuple[Path, Path]:
    secret, allow = keys.secret("distributor"), keys.allow
    if how == "no allow dir":
        allow = keys.dir / "missing"
    elif how == "empty allow dir":
        allow = keys.dir / "empty"
        allow.mkdir()
    elif how == "no key file in the allow dir":
        allow = keys.dir / "other"
        allow.mkdir()
        (allow / "README").write_text("put keys here")
    elif how == "a secret key in the allow dir":
        shutil.copy(keys.secret("stranger"), allow)
    elif how == "a corrupt key file":
        (allow / "w3.key").write_text('curve\n    public-key = "not-a-key"\n')
    elif how == "no secret key file":
        secret = keys.dir / "nope.key_secret"
    elif how == "a public key given as the secret":
        secret = keys.public("distributor")
    return secret, allow


@pytest.mark.parametrize(
    "how",
    [
        "no allow dir",
        "empty allow dir",
        "no key file in the allow dir",
        "a secret key in the allow dir",
        "a corrupt key file",
        "no secret key file",
        "a public key given as the secret",
    ],
)
async def test_a_misconfigured_curve_distributor_refuses_to_start(
    how: str, keys: Keys, config: Config, cleanup: Cleanup
) -> None:
    secret, allow = misconfigure(keys, how)
    with pytest.raises(ConfigError):
        CurveServer.from_files(secret, allow)
    public, secret_key = read_key_file(keys.secret("distributor"))
    assert secret_key is not None
    with pytest.raises(ConfigError, match="allow-list"):
        CurveServer(public_key=public, secret_key=secret_key, allow_dir=allow, allowed={})


def test_a_node_asked_for_half_a_curve_setup_refuses_to_start(
    keys: Keys, job_dir: Path, tmp_path: Path
) -> None:
    with NodeProcess(
        "w1",
        ["127.0.0.1:9"],
        jobs=job_dir,
        extra=["--curve-secret", str(keys.secret("w1"))],
        log_path=tmp_path / "w1.log",
    ) as proc:
        assert proc.wait(30) == 2
        assert "needs both --curve-secret and --curve-server-key" in proc.output()


async def test_only_an_allowed_node_gets_jobs(
    keys: Keys, job_dir: Path, config: Config, cleanup: Cleanup, tmp_path: Path
) -> None:
    server = keys.server()
    d = await start_distributor(cleanup, config, curve=server)
    settings = {**FAST, "merge_job_itself_to_args": True, "log_job_processing": True}

    def node(name: str, flags: list[str]) -> NodeProcess:
        return cleanup.add(
            NodeProcess(
                name,
                [d.address],
                jobs=job_dir,
                settings=settings,
                extra=flags,
                log_path=tmp_path / f"{name}.log",
            )
        )

    allowed = node("w1", keys.node_flags("w1"))
    stranger = node("stranger", keys.node_flags("stranger"))
    plain = node("plain", [])
    await wait_alive(d, "w1")
    results = await asyncio.wait_for(
        asyncio.gather(*(d.enqueue("echo", {"text": str(i)}) for i in range(20))), 15
    )
    assert {r["ran_on"] for r in results} == {"w1"}
    stranger_key = read_key_file(keys.public("stranger"))[0].decode()
    await async_wait_until(lambda: server.denied.get(stranger_key, 0) >= 2, 10)
    assert set(d.core.router.nodes) == {"w1"}  # the others never got a message through
    for proc in (stranger, plain):
        assert proc.proc.poll() is None
        assert "connected to distributor" not in proc.output()
        assert "started (attempt" not in proc.output()
    assert "connected to distributor" in allowed.output()


async def test_a_valid_key_cannot_claim_another_nodes_name(
    keys: Keys, job_dir: Path, cleanup: Cleanup
) -> None:
    config = Config(**{**FAST, "merge_job_itself_to_args": True, "always_use_specified_node": True})
    d = await start_distributor(cleanup, config, curve=keys.server())
    await start_node(cleanup, "w1", d.address, job_dir, config, curve=keys.client("w1"))
    impostor = await start_node(cleanup, "w2", d.address, job_dir, config, curve=keys.client("w1"))
    await wait_alive(d, "w1")
    pinned = [d.enqueue("echo", {"text": str(i)}, node="w2") for i in range(3)]
    rejected = d._endpoint.rejected if d._endpoint else {}
    peer = repr(P.routing_id("w2", impostor.session))
    await async_wait_until(lambda: rejected.get(peer, 0) >= 3, 10)
    assert impostor.stats["received"] == 0 and "w2" not in d.core.router.nodes
    assert not any(h.done() for h in pinned)
    await impostor.close()

    real = await start_node(cleanup, "w2", d.address, job_dir, config, curve=keys.client("w2"))
    results = await asyncio.wait_for(asyncio.gather(*pinned), 15)
    assert {r["ran_on"] for r in results} == {"w2"} and real.stats["received"] == 3

    # With the real node connected, an impostor cannot take its connection over either.
    again = await start_node(cleanup, "w2", d.address, job_dir, config, curve=keys.client("w1"))
    again_peer = repr(P.routing_id("w2", again.session))
    await async_wait_until(lambda: rejected.get(again_peer, 0) >= 1, 10)  # it tried, refused
    results = await asyncio.wait_for(
        asyncio.gather(*(d.enqueue("echo", {"text": "x"}, node="w2") for _ in range(5))), 15
    )
    assert {r["ran_on"] for r in results} == {"w2"}
    assert again.stats["received"] == 0 and real.stats["received"] == 8


async def test_removing_a_key_and_reloading_stops_that_node(
    keys: Keys, job_dir: Path, config: Config, cleanup: Cleanup
) -> None:
    server = keys.server()
    d = await start_distributor(cleanup, config, curve=server)
    w1 = await start_node(cleanup, "w1", d.address, job_dir, config, curve=keys.client("w1"))
    await start_node(cleanup, "w2", d.address, job_dir, config, curve=keys.client("w2"))
    await wait_alive(d, "w1")
    await wait_alive(d, "w2")
    results = await asyncio.wait_for(
        asyncio.gather(*(d.enqueue("echo", {"text": str(i)}) for i in range(20))), 15
    )
    assert {r["ran_on"] for r in results} == {"w1", "w2"}

    (keys.allow / "w1.key").unlink()
    server.reload()
    before = w1.stats["received"]
    results = await asyncio.wait_for(
        asyncio.gather(*(d.enqueue("echo", {"text": str(i)}) for i in range(20))), 15
    )
    assert {r["ran_on"] for r in results} == {"w2"}
    assert w1.stats["received"] == before
    assert "w1" not in alive_nodes(d)

    # A fresh connection with the removed key is refused at the handshake.
    await w1.close()
    w1_key = read_key_file(keys.public("w1"))[0].decode()
    refused = server.denied.get(w1_key, 0)
    w1 = await start_node(cleanup, "w1", d.address, job_dir, config, curve=keys.client("w1"))
    await async_wait_until(lambda: server.denied.get(w1_key, 0) > refused, 10)
    assert "w1" not in alive_nodes(d) and not w1.snapshot()["distributors"][d.address]

    # Putting the key back lets it in again (the node redials after the refusal).
    shutil.copy(keys.public("w1"), keys.allow / "w1.key")
    server.reload()
    await wait_alive(d, "w1")
    result = await asyncio.wait_for(d.enqueue("echo", {"text": "back"}, node="w1"), 15)
    assert result["ran_on"] == "w1"


async def test_sighup_reloads_the_allow_list(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    server = keys.server()
    remove = server.reload_on_sighup(asyncio.get_running_loop())
    try:
        w1_key = read_key_file(keys.public("w1"))[0].decode()
        assert w1_key in server.allowed
        (keys.allow / "w1.key").unlink()
        os.kill(os.getpid(), signal.SIGHUP)
        await async_wait_until(lambda: w1_key not in server.allowed, 5)
        (keys.allow / "broken.key").write_text("not a key\n")
        os.kill(os.getpid(), signal.SIGHUP)  # a bad reload is logged; the old list stays
        await async_wait_until(lambda: "allow-list not reloaded" in caplog.text, 5)
        assert set(server.allowed) == {read_key_file(keys.public("w2"))[0].decode()}
    finally:
        remove()
        server.close()


async def test_without_its_zap_handler_a_curve_socket_admits_no_one(keys: Keys) -> None:
    """Fail closed: ZAP_DOMAIN with ZAP_ENFORCE_DOMAIN, so no handler means no connection."""
    ctx: zmq.Context[Any] = zmq.Context()
    server = keys.server()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    dealers: list[zmq.Socket[Any]] = []

    def dial() -> zmq.Socket[Any]:
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        keys.client("w1").apply_client(dealer)
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealers.append(dealer)
        return dealer

    try:
        server.apply_server(router)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dial().send(b"with a handler")
        assert router.poll(5000) and router.recv_multipart()[1] == b"with a handler"
        ZAP_HANDLERS.stop(ctx)
        assert not ZAP_HANDLERS.running(ctx)
        dial().send(b"without one")
        assert router.poll(1500) == 0
    finally:
        server.close()
        ZAP_HANDLERS.stop(ctx)
        for sock in [*dealers, router]:
            sock.close(linger=0)
        ctx.term()


@pytest.mark.parametrize("curve", [False, True], ids=["plaintext", "curve"])
async def test_curve_hides_job_args_from_the_network(
    curve: bool, keys: Keys, job_dir: Path, config: Config, cleanup: Cleanup
) -> None:
    canary = "canary-4b1d-" + os.urandom(6).hex()
    d = await start_distributor(cleanup, config, curve=keys.server() if curve else None)
    relay = Relay(d.port)
    await relay.start()
    try:
        await start_node(
            cleanup,
            "w1",
            f"127.0.0.1:{relay.port}",
            job_dir,
            config,
            curve=keys.client("w1") if curve else None,
        )
        await wait_alive(d, "w1")
        result = await asyncio.wait_for(d.enqueue("echo", {"text": canary}), 15)
        assert result["echoed"] == canary  # it crossed the relay, both ways
        assert len(relay.seen) > 500
        assert (canary.encode() in relay.seen) is not curve
    finally:
        await relay.close()
