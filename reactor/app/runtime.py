"""The reactor thread behind the ``reactor`` module facade (``JR.run``, ``JR.enqueue``, ...).

One :class:`Runtime` owns an event loop (uvloop when installed), the thread it runs on, and the
distributor and nodes started through the facade. The facade holds exactly one of these.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Unpack

from reactor.app.forkguard import ForkGuard
from reactor.app.loop import APPLICATION_SIGNALS
from reactor.app.loop import new_event_loop as new_event_loop  # the CLI's import path
from reactor.config import Config
from reactor.distributor.drain import wait_interruptibly
from reactor.distributor.driver import Distributor
from reactor.distributor.flows import FlowHandle
from reactor.distributor.handle import Feedback, JobHandle, ProgressFeedback
from reactor.errors import ReactorError
from reactor.jobs.flow import Flow
from reactor.jobs.options import FlowOptions, options_from
from reactor.node.driver import Node
from reactor.storage import Storage

if TYPE_CHECKING:
    from reactor.storage.client import Client

log = logging.getLogger("reactor")
T = TypeVar("T")


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
        self._make_distributor: Callable[[], Distributor] | None = None  # to restart after fork
        self._exit_hook = False
        self._forked = False
        self._parent_copies: list[object] = []  # a fork's dead copies, kept so none is closed
        self._guard = ForkGuard(self._after_fork)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, fn: Callable[[], Any] | None = None) -> None:
        """Start the loop in a daemon thread if none runs, then call ``fn`` on it (``JR.run``).

        Returns once ``fn`` has run on the loop (and, if it returned a coroutine, once that
        finished); an exception it raised is raised here, and :meth:`ready` stays False.
        """
        self._start_loop()
        self._call_in_loop(fn)

    def _start_loop(self) -> None:
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

    def _serve(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        # The application's signals are for its main thread: a signal lands on any thread not
        # blocking it, and a main thread blocked in a lock wakes only if it lands there (SIGTERM
        # could sit unhandled). Threads this one starts (executors, defer=True) inherit the mask.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, APPLICATION_SIGNALS)
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _call_in_loop(self, fn: Callable[[], Any] | None) -> None:
        """Call ``fn`` on the loop and wait for it (and a coroutine it returns); re-raise."""
        loop = self.loop
        assert loop is not None
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def finished(task: asyncio.Future[Any]) -> None:
            if task.cancelled():
                done.set_exception(ReactorError("the function given to JR.run was cancelled"))
            elif task.exception() is not None:
                done.set_exception(task.exception())
            else:
                done.set_result(None)

        def call() -> None:
            try:
                result = fn() if fn is not None else None
            except BaseException as exc:
                done.set_exception(exc)
                return
            if asyncio.iscoroutine(result):
                loop.create_task(result).add_done_callback(finished)
            else:
                done.set_result(None)

        if self.in_loop_thread():
            if fn is not None:
                result = fn()
                if asyncio.iscoroutine(result):
                    loop.create_task(result)  # the loop cannot wait on itself
            self._ready.set()
            return
        loop.call_soon_threadsafe(call)
        done.result()
        self._ready.set()

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
        failure: list[BaseException] = []

        def first() -> None:
            try:
                self._call_in_loop(fn)
            except BaseException as exc:  # stop, and raise it from run_forever
                failure.append(exc)
                loop.stop()

        loop.call_soon(first)
        try:
            loop.run_forever()
            if failure:
                raise failure[0]
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

    def stop(self) -> int:
        """Drain and stop the distributor, stop the nodes, then the loop (``JR.stop``).

        Waits up to ``config["drain_timeout"]`` for a node to store every job the distributor
        holds; returns how many were not (they are logged at ERROR, with their names). Called on
        the loop's own thread it cannot wait: it schedules the stop and returns 0.
        """
        loop = self.loop
        if self._forked:  # the loop is the parent's; a distributor restarted here is ours
            self._forked = False
            self._guard.adopt()
            self.distributor = None
            return 0
        if loop is None or not loop.is_running():
            return 0
        if self.in_loop_thread():
            self._stop_in_loop()
            return 0
        bound = float(self.config["drain_timeout"]) + float(self.config["shutdown_grace"]) + 30.0
        shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:  # a first Ctrl-C says what the drain waits for, a second stops waiting
            lost = wait_interruptibly(shutdown, bound, self.distributor, loop)
        finally:
            if self.thread is not None and self.thread.daemon:
                loop.call_soon_threadsafe(loop.stop)
                self.thread.join(timeout=30)
                self.loop = None
            else:  # run_forever's thread: it stops the loop itself once _shutdown is done
                loop.call_soon_threadsafe(self._stop_in_loop)
        return lost

    def _stop_in_loop(self) -> None:
        assert self.loop is not None
        task = self.loop.create_task(self._shutdown())
        task.add_done_callback(lambda _: self.loop.stop() if self.loop else None)

    async def _shutdown(self) -> int:
        """Drain first (nodes are still up to store jobs), then stop the nodes, then close."""
        lost = 0
        distributor = self.distributor
        if distributor is not None:
            await distributor.drain(float(self.config["drain_timeout"]))
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            await node.stop()
        if distributor is not None:
            lost = await distributor.stop(drain_timeout=0.0)
            self.distributor = None
        clients, self._result_clients = self._result_clients, {}
        for client in clients.values():
            await client.aclose()
        self._ready.clear()
        return lost

    def drain(self, timeout: float | None = 10.0) -> int:
        """Wait until a node stored every job the distributor holds (``JR.drain``).

        Returns:
            How many jobs no node has stored yet (0 when there is no distributor).
        """
        distributor = self._current()
        if distributor is None:
            return 0
        bound = None if timeout is None else timeout + 30.0
        return self.call(lambda: distributor.drain(timeout), timeout=bound)

    def _at_exit(self) -> None:
        """The interpreter exits normally: drain and stop what the facade started."""
        if self._forked:
            return  # a child that never used the parent's distributor holds none of its jobs
        try:
            self.stop()
        except Exception:  # at exit there is no caller left to raise to
            log.exception("stopping the reactor at interpreter exit failed")

    # -- fork safety ------------------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: the loop, its thread and sockets are the parent's dead copies.

        They are dropped (never closed: they are the parent's) and a distributor the parent had
        started is started again on this process's first use of it.
        """
        self._parent_copies.append((self.loop, self.distributor, self.nodes, self._result_clients))
        self._result_clients = {}
        self._forked = self.distributor is not None or self._forked
        self.loop = None
        self.thread = None
        self.distributor = None
        self.nodes = []
        self._ready = threading.Event()
        self._lock = threading.Lock()

    def _current(self) -> Distributor | None:
        """The facade's distributor; in a forked child, the parent's one started again here."""
        if self._forked:
            self._restart_after_fork()
        return self.distributor

    def _restart_after_fork(self) -> None:
        make = self._make_distributor
        assert make is not None
        fresh = make()
        try:
            self._start_distributor(fresh)
        except ReactorError as exc:
            raise ReactorError(
                f"this process (pid {os.getpid()}) is a fork of pid {self._guard.pid}, which "
                f"started the distributor; restarting it here failed: {exc}. Start the "
                "distributor after the fork (gunicorn: without --preload, or in a post_fork "
                "hook), or bind port 0 (with announce= so nodes find each process)"
            ) from exc
        self._forked = False
        self._guard.adopt()
        pid, parent = os.getpid(), self._guard.pid
        log.info("process %d is a fork of %d: started its own distributor on %s", pid, parent,
                 fresh.address)  # fmt: skip

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
        limits_store: str | None = None,
    ) -> Distributor:
        """Bind a distributor on the reactor loop (starting it if needed); returns once bound
        (and registered, with ``announce=``; see :class:`Distributor` for the options).
        ``metrics_port`` serves its Prometheus metrics on 127.0.0.1 (0: a free port, see
        ``distributor.metrics_server.port``).

        Its jobs are drained at :meth:`stop` and at the interpreter's normal exit; in a process
        forked after this call, it is started again on first use (see :meth:`_after_fork`).

        Raises:
            ReactorError: a distributor already runs, or the address cannot be bound.
        """
        if self.distributor is not None and self.distributor.started:
            raise ReactorError(f"a distributor already runs on {self.distributor.address}")
        if limits_store is not None:  # its welcome names it to nodes with none of their own
            self.config["limits_store"] = limits_store

        def make() -> Distributor:
            return Distributor(
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

        distributor = make()
        self._start_distributor(distributor)
        self._make_distributor = make
        self._forked = False
        self._guard.adopt()
        return distributor

    def _start_distributor(self, distributor: Distributor) -> None:
        if self.loop is None or not self.loop.is_running():
            self._start_loop()
        assert self.loop is not None
        if self.in_loop_thread():
            distributor.start_in_loop(self.loop)
        else:
            self.call(distributor.start)
        self.distributor = distributor
        if not self._exit_hook:
            self._exit_hook = True
            atexit.register(self._at_exit)

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
        tags: list[str] | None = None,
        on_progress: ProgressFeedback | None = None,
        **flow: Unpack[FlowOptions],
    ) -> JobHandle:
        """Enqueue through the facade's distributor (see :meth:`Distributor.enqueue`)."""
        distributor = self._current() if self._forked else self.distributor
        if distributor is None:
            raise ReactorError("no distributor: call JR.start_distributor(host, port) first")
        # In EnqueueOptions' field order (a tuple is the cheapest way to build one).
        # fmt: off
        options = options_from((on_success, on_error, after, run_at, period, defer, node,
                                not_node, timeout, max_attempt, cron, tz, priority, unique_key,
                                unique_for, tags, None, on_progress,
                                flow or None))
        # fmt: on
        return distributor.submit(name, args, options)

    def enqueue_flow(
        self, flow: Flow, *, on_success: Feedback | None = None, on_error: Feedback | None = None
    ) -> FlowHandle:
        """Enqueue a workflow through the facade's distributor (``Distributor.enqueue_flow``)."""
        distributor = self._current()
        if distributor is None:
            raise ReactorError("no distributor: call JR.start_distributor(host, port) first")
        return distributor.enqueue_flow(flow, on_success=on_success, on_error=on_error)

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

        from reactor.storage.client import make_client
        from reactor.storage.results import wait_result

        async def fetch() -> dict[str, Any]:
            client = self._result_clients.get(url)
            if client is None:
                client = self._result_clients[url] = make_client(url)
            return await wait_result(client, job_id, timeout)

        return self.call(fetch, timeout=None)

    def snapshot(self) -> dict[str, Any]:
        """The distributor's live view, fetched safely from any thread."""
        distributor = self._current()
        if distributor is None:
            raise ReactorError("no distributor: call JR.start_distributor(host, port) first")
        if self.in_loop_thread():
            return distributor.snapshot()

        async def view() -> dict[str, Any]:
            return distributor.snapshot()

        return self.call(view)
