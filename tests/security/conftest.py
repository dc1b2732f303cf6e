"""Fixtures for the hostile-network suite: job files, CURVE keys, raw ZMTP peers, a TCP relay."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from reactor import Config, Distributor, Node
from reactor.net.security import CurveClient, CurveServer, generate_keys
from reactor.testing.support import NodeProcess, async_wait_until

JOB_FILE = """
import asyncio

from reactor import job


@job("echo")
def echo(args):
    args["echoed"] = args.get("text")
    itself = args.pop("job_itself", None)
    if itself is not None:
        args["ran_on"] = itself["node"]


@job("slow")
async def slow(args):
    await asyncio.sleep(args.get("delay", 0.5))
    args["slept"] = True
"""

#: Fast liveness for tests (the defaults, 1 s / 5 s, are for production).
FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 3.0,
    "log_job_processing": False,
}


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """A job directory with ``echo`` and ``slow``."""
    path = tmp_path / "jobs"
    path.mkdir()
    (path / "jobs.py").write_text(JOB_FILE)
    return path


@pytest.fixture
def config() -> Config:
    return Config(**FAST)


@dataclass
class Keys:
    """Key files for one test: a distributor, allowed nodes w1 and w2, and an unknown key."""

    dir: Path
    allow: Path

    def secret(self, name: str) -> Path:
        return self.dir / f"{name}.key_secret"

    def public(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def server(self) -> CurveServer:
        return CurveServer.from_files(self.secret("distributor"), self.allow)

    def client(self, name: str) -> CurveClient:
        return CurveClient.from_files(self.secret(name), self.public("distributor"))

    def node_flags(self, name: str) -> list[str]:
        return [
            "--curve-secret",
            str(self.secret(name)),
            "--curve-server-key",
            str(self.public("distributor")),
        ]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    k = Keys(tmp_path / "keys", tmp_path / "allow")
    for name in ("distributor", "w1", "w2", "stranger"):
        generate_keys(k.dir, name)
    k.allow.mkdir()
    for name in ("w1", "w2"):
        shutil.copy(k.public(name), k.allow / f"{name}.key")
    return k


class Cleanup:
    """Distributors, nodes and processes to stop at teardown, in reverse order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> Any:
        self.items.append(item)
        return item


@pytest.fixture
async def cleanup() -> AsyncIterator[Cleanup]:
    c = Cleanup()
    yield c
    for item in reversed(c.items):
        if isinstance(item, Node):
            await item.close()
        elif isinstance(item, Distributor):
            await item.stop()
        elif isinstance(item, NodeProcess):
            item.__exit__(None, None, None)
        elif isinstance(item, CurveServer):
            item.close()


async def start_distributor(
    cleanup: Cleanup, config: Config, *, curve: CurveServer | None = None, port: int = 0
) -> Distributor:
    d = cleanup.add(Distributor("127.0.0.1", port, config=config, curve=curve))
    await d.start()
    return d


async def start_node(
    cleanup: Cleanup,
    name: str,
    address: str,
    job_dir: Path,
    config: Config,
    *,
    curve: CurveClient | None = None,
    capacity: int | None = None,
) -> Node:
    node = cleanup.add(
        Node(
            name,
            distributors=[address],
            job_directory=job_dir,
            config=config,
            curve=curve,
            capacity=capacity,
        )
    )
    await node.start()
    return node


async def wait_alive(d: Distributor, name: str, timeout: float = 15.0) -> None:
    """Wait until ``d`` sees node ``name`` connected."""

    def up() -> bool:
        return d.node_alive(name)

    await async_wait_until(up, timeout, message=f"node {name} did not connect in {timeout}s")


def alive_nodes(d: Distributor) -> set[str]:
    return {n["name"] for n in d.snapshot()["nodes"] if n["alive"]}


def rss(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), in bytes.

    For this process, memory already freed is first handed back to the OS (glibc's
    ``malloc_trim``): how much ZeroMQ and Python *held* while a flood was queued depends on how
    fast a loaded machine drained it, while what is still resident afterwards is what leaked.
    """
    if pid is None and _LIBC is not None:
        _LIBC.malloc_trim(0)
    return int(psutil.Process(pid).memory_info().rss)


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - present on glibc only
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _glibc()


MiB = 1024 * 1024


# -- raw ZMTP peers -------------------------------------------------------------------------------


def zmtp_greeting() -> bytes:
    """A ZMTP 3.0 greeting for the NULL mechanism."""
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32


def zmtp_ready(socket_type: bytes, identity: bytes = b"") -> bytes:
    """A READY command announcing ``socket_type`` (and a routing id)."""
    props = b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    if identity:
        props += b"\x08Identity" + struct.pack(">I", len(identity)) + identity
    body = b"\x05READY" + props
    return b"\x04" + bytes([len(body)]) + body


def zmtp_frame(payload: bytes) -> bytes:
    """One final message frame."""
    if len(payload) < 256:
        return b"\x00" + bytes([len(payload)]) + payload
    return b"\x02" + struct.pack(">Q", len(payload)) + payload


def random_stream(total: int) -> Iterator[bytes]:
    """``total`` random bytes, 64 KiB at a time (never held at once)."""
    for _ in range(total // 65536):
        yield os.urandom(65536)


def garbage_frames(total: int) -> Iterator[bytes]:
    """Well-framed ZMTP messages of random content and size: they all reach the decoder."""
    sent = 0
    while sent < total:
        chunk = b"".join(
            zmtp_frame(os.urandom(size))
            for size in (int.from_bytes(os.urandom(2), "big") % 3000 for _ in range(40))
        )
        sent += len(chunk)
        yield chunk


def huge_frame_header() -> Iterator[bytes]:
    """A frame header announcing 2 GiB, then a mebibyte of its 'body'."""
    yield b"\x02" + struct.pack(">Q", 2 * 1024 * MiB)
    yield from random_stream(MiB)


#: In an attack, "read the peer's greeting and READY now" (a real peer waits for them before it
#: sends messages; libzmq refuses messages that overtake its own handshake).
READ_PEER = b""


def pump(sock: socket.socket, pieces: Iterable[bytes]) -> int:
    """Send pieces until done or the peer hangs up; returns the bytes sent."""
    sent = 0
    try:
        for piece in pieces:
            if piece is READ_PEER:
                read_handshake(sock)
                continue
            sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass
    return sent


def read_handshake(sock: socket.socket, at_least: int = 64 + 30, timeout: float = 2.0) -> None:
    """Read what the peer sends until its greeting and READY are in (or ``timeout``)."""
    got = 0
    deadline = time.monotonic() + timeout
    previous = sock.gettimeout()
    try:
        while got < at_least and time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(4096)
            if not data:
                raise ConnectionResetError("the peer hung up during the handshake")
            got += len(data)
    except TimeoutError:
        pass
    finally:
        sock.settimeout(previous)


def attack_listener(port: int, attack: Callable[[], Iterable[bytes]], total: int) -> int:
    """Connect to ``port`` again and again, sending ``attack()`` each time, until ``total``
    bytes have been offered (a peer that hangs up early makes us reconnect); returns the bytes
    the victim accepted."""
    offered = accepted = 0
    deadline = time.monotonic() + 20
    while offered < total and time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            n = pump(s, attack())
        accepted += n
        offered += max(n, 256 * 1024)  # a peer that hangs up at once still counts as tried
    return accepted


class FakeServer:
    """A TCP server that answers every connection with an attack (what a node dials)."""

    def __init__(self, port: int, attack: Callable[[], Iterable[bytes]]) -> None:
        self.attack = attack
        self.connections = 0
        self.sent = 0
        self._sock = socket.create_server(("127.0.0.1", port))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                self.sent += pump(conn, self.attack())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()


# -- a TCP relay that keeps what it forwards ------------------------------------------------------


class Relay:
    """A loopback TCP relay (node -> relay -> distributor) recording every byte it forwards."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.seen = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._copy(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _copy(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                self.seen += data
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()


class LoopErrors:
    """Records what reaches the event loop's exception handler (an unhandled error)."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def summary(self) -> str:
        return "\n".join(f"{c.get('message')}: {c.get('exception')!r}" for c in self.errors[:5])


@pytest.fixture
async def loop_errors() -> AsyncIterator[LoopErrors]:
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(errors)
    yield errors
    loop.set_exception_handler(previous)
