"""The reactor thread behind the ``reactor`` module facade (``JR.run``, ``JR.enqueue``, ...).

One :class:`Runtime` owns an event loop (uvloop when installed), the thread it runs on, and the
distributor and nodes started through the facade. The facade holds exactly one of these.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from reactor.config import Config
from reactor.distributor import Distributor
from reactor.errors import ReactorError
from reactor.handle import Feedback, JobHandle
from reactor.node import Node
from reactor.storage import Storage

if TYPE_CHECKING:
    from reactor.redis_client import Client

log = logging.getLogger("reactor")
T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Runtime:
    """A loop on a thread, plus the distributor and nodes started on it."""

    #: The runtime behind the ``reactor`` module facade (``JR.enqueue`` & co.), so the testing
    #: helpers can route the facade's enqueues to a test distributor (:mod:`reactor.testing`).
    facade: ClassVar[Runtime | None] = None

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.distributor: Distributor | None = None
        self.nodes: list[Node] = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._result_clients: dict[str, Client] = {}

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, fn: Callable[[], Any] | None = None) -> None:
        """Start the loop in a daemon thread if none runs, then call ``fn`` on it (``JR.run``)."""
        with self._lock:
            if self.loop is None or not self.loop.is_running():
                self._ready.clear()
                loop = new_event_loop()
                started = threading.Event()
                self.loop = loop
                self.thread = threading.Thread(
                    target=self._serve, args=(loop, started), name="reactor", daemon=True
                )
                self.thread.start()
                started.wait()
        self._call_in_loop(fn)

    def _serve(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call_in_loop(self, fn: Callable[[], Any] | None) -> None:
        assert self.loop is not None

        def call() -> None:
            try:
                if fn is not None:
                    result = fn()
                    if asyncio.iscoroutine(result):
                        self.loop.create_task(result)  # type: ignore[union-attr]
            finally:
                self._ready.set()

        if self.in_loop_thread():
            call()
        else:
            self.loop.call_soon_threadsafe(call)

    def run_forever(self, fn: Callable[[], Any] | None = None) -> None:
        """Run the loop in this thread until :meth:`stop` or SIGINT/SIGTERM (``JR.run!``)."""
        loop = new_event_loop()
        with self._lock:
            if self.loop is not None and self.loop.is_running():
                raise ReactorError("the reactor loop already runs in another thread")
            self.loop = loop
            self.thread = threading.current_thread()
        asyncio.set_event_loop(loop)
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            loop.add_signal_handler(sig, self._stop_in_loop)
        self._ready.clear()
        self._call_in_loop(fn)
        try:
            loop.run_forever()
        finally:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)
            loop.run_until_complete(self._shutdown())
            loop.close()
            self.loop = None

    def ready(self) -> bool:
        """True once the loop runs and the function given to run/run_forever has returned."""
        return self._ready.is_set() and self.loop is not None and self.loop.is_running()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until :meth:`ready` (for application threads)."""
        return self._ready.wait(timeout)

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the reactor loop's thread."""
        return self.thread is not None and threading.current_thread() is self.thread

    def call(self, coro_fn: Callable[[], Awaitable[T]], timeout: float | None = 30.0) -> T:
        """Run ``coro_fn()`` on the loop and wait for it, from a thread that is not the loop's."""
        if self.loop is None or not self.loop.is_running():
            self.run()
        assert self.loop is not None
        if self.in_loop_thread():
            raise ReactorError("cannot block the reactor loop waiting on itself; use await")

        async def wrapper() -> T:
            return await coro_fn()

        coro: Coroutine[Any, Any, T] = wrapper()
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the distributor and nodes, then the loop; joins the thread when it is ours."""
        loop = self.loop
        if loop is None or not loop.is_running():
            return
        if self.in_loop_thread():
            self._stop_in_loop()
            return
        loop.call_soon_threadsafe(self._stop_in_loop)
        if self.thread is not None and self.thread.daemon:
            self.thread.join(timeout=30)
        self.loop = None

    def _stop_in_loop(self) -> None:
        assert self.loop is not None
        task = self.loop.create_task(self._shutdown())
        task.add_done_callback(lambda _: self.loop.stop() if self.loop else None)

    async def _shutdown(self) -> None:
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            await node.stop()
        if self.distributor is not None:
            await self.distributor.stop()
            self.distributor = None
        clients, self._result_clients = self._result_clients, {}
        for client in clients.values():
            await client.aclose()
        self._ready.clear()

    # -- roles ------------------------------------------------------------------------------------

    def start_distributor(
        self,
        host: str,
        port: int,
        *,
        curve: Any = None,
        announce: str | None = None,
        group: str = "default",
        result_store: str | None = None,
        outbox: str | None = None,
        unique_store: str | None = None,
        metrics_port: int | None = None,
    ) -> Distributor:
        """Bind a distributor on the reactor loop (starting it if needed); returns once bound
        (and registered, with ``announce=``; see :class:`Distributor` for the options).
        ``metrics_port`` serves its Prometheus metrics on 127.0.0.1 (0: a free port, see
        ``distributor.metrics_server.port``)."""
        if self.distributor is not None and self.distributor.started:
            raise ReactorError(f"a distributor already runs on {self.distributor.address}")
        distributor = Distributor(
            host,
            port,
            config=self.config,
            curve=curve,
            announce=announce,
            group=group,
            result_store=result_store,
            outbox=outbox,
            unique_store=unique_store,
            metrics_port=metrics_port,
        )
        if self.loop is None or not self.loop.is_running():
            self.run()
        assert self.loop is not None
        if self.in_loop_thread():
            distributor.start_in_loop(self.loop)
        else:
            self.call(distributor.start)
        self.distributor = distributor
        return distributor

    def start_node(
        self,
        name: str,
        *,
        storage: str | Storage = "memory_storage",
        distributors: Sequence[str | tuple[str, int]] = (),
        job_directory: str | Path | None = None,
        capacity: int | None = None,
        curve: Any = None,
        discover: str | None = None,
    ) -> Node:
        """Start a node on the reactor loop; from the loop thread its start runs as a task."""
        node = Node(
            name,
            distributors=distributors,
            storage=storage,
            job_directory=job_directory,
            capacity=capacity,
            config=self.config,
            curve=curve,
            discover=discover,
        )
        self.nodes.append(node)
        if self.loop is not None and self.in_loop_thread():
            self.loop.create_task(node.start())
        else:
            self.call(node.start)
        return node

    def enqueue(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        after: float | None = None,
        run_at: dt.datetime | float | None = None,
        period: float | None = None,
        defer: bool = False,
        node: str | None = None,
        not_node: str | None = None,
        on_success: Feedback | None = None,
        on_error: Feedback | None = None,
        timeout: float | None = None,
        max_attempt: int | None = None,
        cron: str | None = None,
        tz: str | None = None,
        priority: int = 0,
        unique_key: str | None = None,
        unique_for: float | None = None,
    ) -> JobHandle:
        """Enqueue through the facade's distributor (see :meth:`Distributor.enqueue`)."""
        if self.distributor is None:
            raise ReactorError("no distributor: call JR.start_distributor(host, port) first")
        return self.distributor.enqueue(
            name,
            args,
            after=after,
            run_at=run_at,
            period=period,
            defer=defer,
            node=node,
            not_node=not_node,
            on_success=on_success,
            on_error=on_error,
            timeout=timeout,
            max_attempt=max_attempt,
            cron=cron,
            tz=tz,
            priority=priority,
            unique_key=unique_key,
            unique_for=unique_for,
        )

    def result(
        self, job_id: str, timeout: float | None = None, *, store: str | None = None
    ) -> dict[str, Any]:
        """The final args of job ``job_id`` from the result store, from any process (``JR.result``).

        Waits (pushed, no polling) until the outcome is there or ``timeout`` passes. The store
        is ``store``, else the facade distributor's ``result_store``, else ``config["redis_url"]``.

        Raises:
            JobFailed: the job ended in error.
            JobCancelledError: the job was cancelled.
            JobTimeoutError: no outcome within ``timeout``.
        """
        url = store
        if url is None and self.distributor is not None:
            url = self.distributor.result_store
        url = url or str(self.config["redis_url"])

        from reactor.redis_client import make_client
        from reactor.results import wait_result

        async def fetch() -> dict[str, Any]:
            client = self._result_clients.get(url)
            if client is None:
                client = self._result_clients[url] = make_client(url)
            return await wait_result(client, job_id, timeout)

        return self.call(fetch, timeout=None)

    def snapshot(self) -> dict[str, Any]:
        """The distributor's live view, fetched safely from any thread."""
        distributor = self.distributor
        if distributor is None:
            raise ReactorError("no distributor: call JR.start_distributor(host, port) first")
        if self.in_loop_thread():
            return distributor.snapshot()

        async def view() -> dict[str, Any]:
            return distributor.snapshot()

        return self.call(view)
