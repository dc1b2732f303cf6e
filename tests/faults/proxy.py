"""A loopback TCP proxy that can cut or blackhole the connections it carries.

Nodes dial the proxy's port instead of the distributor's, so a test can break the path between them
without touching either process. The proxy runs its own asyncio loop in a daemon thread, so it keeps
working while the test's loop (which also runs the distributor) is busy, and it closes itself after
``lifetime`` seconds even if a test forgets to.

* :meth:`TcpProxy.cut` aborts every current connection, both ways (the peers see a reset); new
  connections are accepted again at once, which is what a quick ZeroMQ reconnect meets.
* :meth:`TcpProxy.blackhole` keeps every connection open but delivers nothing either way, like
  a dead network path. Bytes are *held*, not thrown away: a real dead path makes TCP retransmit,
  so once the path heals the stream resumes intact. (Dropping bytes in the middle of a TCP stream
  would corrupt the ZMTP framing, which no network does.) New connections are held too.
  :attr:`TcpProxy.held` says how many bytes each direction holds, so a test can wait until, say,
  feedback is surely in flight before it cuts.
* :meth:`TcpProxy.heal` forwards again; held bytes flow on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_CHUNK = 64 * 1024
_HOLD_MAX = 1024 * 1024  # per direction and connection; beyond it the senders' buffers fill


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``; see the module docstring.

    Args:
        target_host: where to forward (must be a loopback address).
        target_port: the target's port.
        lifetime: seconds after which the proxy closes itself (a bound for forgotten proxies).
    """

    def __init__(self, target_host: str, target_port: int, *, lifetime: float = 300.0) -> None:
        if not ipaddress.ip_address(target_host).is_loopback:
            raise ValueError(f"the fault proxy only forwards on loopback, not to {target_host}")
        self.target_host = target_host
        self.target_port = target_port
        self.host = "127.0.0.1"
        self.port = 0
        self.accepted = 0
        self.cuts = 0
        self.bytes_forwarded = 0
        #: Bytes held now by a blackhole: "up" is client to target (node to distributor).
        self.held = {"up": 0, "down": 0}
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._half_open: set[asyncio.StreamWriter] = set()  # target sides left open by cut()
        self._closed = False  # no more connections (set by close() or when the lifetime ends)
        self._stopped = False  # the thread is gone
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        self._call(self._start(lifetime))

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, what a node's ``--distributor`` gets."""
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """How many client connections are open now."""
        return len(self._conns)

    # -- control (any thread but the proxy's) ----------------------------------------------------

    def cut(self, *, half_open: bool = False) -> int:
        """Abort every current connection both ways; returns how many were cut.

        With ``half_open``, only the client's side is aborted: the connection to the target stays
        open but silent, as when a NAT or firewall drops a flow and the server never hears of it
        (it learns only from its own keepalives). The client reconnects; the server sees a second
        connection from the same peer.
        """
        return self._call(self._cut(half_open))

    def blackhole(self) -> None:
        """Keep connections open but let no byte through, either way, until :meth:`heal`."""
        self._call(self._set_flowing(False))

    def heal(self) -> None:
        """Forward again; bytes held during a blackhole flow on."""
        self._call(self._set_flowing(True))

    def close(self) -> None:
        """Stop listening, abort every connection and stop the proxy's thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inside the proxy's loop ------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the proxy is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self, lifetime: float) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._on_client, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._loop.call_later(lifetime, self._spawn, self._close)

    def _spawn(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = self._loop.create_task(factory())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self, half_open: bool) -> int:
        conns = list(self._conns)
        for pair in conns:
            if half_open:
                self._half_open.add(pair[1])
            self._abort(pair)
        self.cuts += 1
        return len(conns)

    def _abort(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        self._conns.discard(pair)
        pair[0].transport.abort()
        if pair[1] not in self._half_open:
            pair[1].transport.abort()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for pair in list(self._conns):
            self._abort(pair)
        for writer in self._half_open:
            writer.transport.abort()
        self._half_open.clear()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    async def _on_client(
        self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
    ) -> None:
        if self._closed:
            c_writer.transport.abort()
            return
        self.accepted += 1
        try:
            t_reader, t_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), 5.0
            )
        except (OSError, TimeoutError):
            c_writer.transport.abort()  # nothing listens there (a stopped distributor): refuse
            return
        pair = (c_writer, t_writer)
        self._conns.add(pair)
        pumps = [
            self._loop.create_task(self._pump(c_reader, t_writer, "up")),
            self._loop.create_task(self._pump(t_reader, c_writer, "down")),
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            self._abort(pair)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        """Copy ``reader`` to ``writer``; while blackholed, hold what arrives (up to a bound)."""
        flowing = self._flowing
        assert flowing is not None
        held: list[bytes] = []
        size = 0
        read: asyncio.Task[bytes] | None = None
        try:
            while True:
                if flowing.is_set():
                    for chunk in held:  # healed: what was held goes first, in order
                        writer.write(chunk)
                        self.bytes_forwarded += len(chunk)
                    self.held[direction] -= size
                    held, size = [], 0
                    await writer.drain()
                    read = read or self._loop.create_task(reader.read(_CHUNK))
                    data = await read
                    read = None
                    if not data:
                        return
                    if flowing.is_set():
                        writer.write(data)
                        await writer.drain()
                        self.bytes_forwarded += len(data)
                        continue
                elif size >= _HOLD_MAX:
                    await flowing.wait()  # held enough: let the sender's buffers fill up
                    continue
                else:
                    read = read or self._loop.create_task(reader.read(_CHUNK))
                    healed = self._loop.create_task(flowing.wait())
                    await asyncio.wait({read, healed}, return_when=asyncio.FIRST_COMPLETED)
                    healed.cancel()
                    if not read.done():
                        continue
                    data = read.result()
                    read = None
                    if not data:  # a dead path delivers no FIN either: hold it until healed
                        await flowing.wait()
                        for chunk in held:
                            writer.write(chunk)
                        await writer.drain()
                        return
                held.append(data)
                size += len(data)
                self.held[direction] += len(data)
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            if read is not None:
                read.cancel()
            self.held[direction] -= size
