"""An in-process cluster for tests: one distributor and its nodes on one asyncio loop, memory
storage, the jobs from a directory or from plain functions."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from reactor.app.runtime import Runtime
from reactor.config import Config
from reactor.core.jobstate import JobState
from reactor.distributor.drain import summary
from reactor.distributor.driver import Distributor
from reactor.distributor.handle import JobHandle
from reactor.errors import ReactorError
from reactor.node.driver import Node
from reactor.testing.facade import facade_routed_to
from reactor.testing.jobs import Jobs, registry_from

log = logging.getLogger("reactor.testing")

#: Seconds a teardown waits for the nodes to store jobs just enqueued (they take milliseconds).
STORE_WAIT = 0.5
#: Seconds a teardown lets a running job finish before its node stops anyway.
STOP_GRACE = 1.0


class Cluster:
    """A distributor and ``nodes`` nodes in this process, talking over loopback ZeroMQ.

    The real machinery, so a job runs exactly as in production (chain, retries, feedback,
    routing), only without processes to start. Two ways to run it::

        async with Cluster(jobs="reactor_jobs") as cluster:     # on the running loop
            result = await cluster.enqueue("greet", {"name": "Ada"})

        with Cluster(jobs=[greet]) as cluster:                   # on a loop thread of its own
            result = cluster.enqueue("greet", {"name": "Ada"}).result(timeout=5)

    ``facade=True`` also routes ``JR.enqueue`` to the cluster while it runs.

    Args:
        jobs: the jobs the nodes run (see :func:`reactor.testing.registry_from`).
        nodes: how many nodes (named ``node-1``, ...), or their names.
        config: settings for the distributor and nodes (default: ``Config()``, with
            ``log_job_processing`` off).
        capacity: each node's capacity (default: ``config["node_capacity"]``).
        facade: route the ``reactor`` facade's ``JR.enqueue`` to this cluster while it runs.
    """

    def __init__(
        self,
        jobs: Jobs,
        *,
        nodes: int | Sequence[str] = 1,
        config: Config | None = None,
        capacity: int | None = None,
        facade: bool = False,
    ) -> None:
        self.config = config if config is not None else Config(log_job_processing=False)
        self.registry = registry_from(jobs)
        names = [f"node-{i + 1}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
        if not names:
            raise ValueError("a cluster needs at least one node")
        self.distributor = Distributor("127.0.0.1", 0, config=self.config)
        #: ``distributor.enqueue``: send a job to the cluster's nodes (any thread).
        self.enqueue = self.distributor.enqueue
        self.nodes: list[Node] = []
        self._names = names
        self._capacity = capacity
        self._facade = facade
        self._routing: contextlib.ExitStack | None = None
        self._runtime: Runtime | None = None

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in this cluster; it has {[n.name for n in self.nodes]}")

    async def start(self) -> None:
        """Bind the distributor on the running loop and start the nodes; returns once every
        node has been welcomed."""
        await self.distributor.start()
        for name in self._names:
            node = Node(
                name,
                distributors=[self.distributor.address],
                registry=self.registry,
                capacity=self._capacity,
                config=self.config,
            )
            self.nodes.append(node)
            await node.start()
        if self._facade:
            self._routing = contextlib.ExitStack()
            self._routing.enter_context(facade_routed_to(self.distributor))

    async def stop(self) -> None:
        """Stop the distributor, then the nodes, at once: a job a test leaves behind (deferred,
        retrying, still running) is reported at WARNING, not waited for.

        The distributor goes first, so the nodes keep what they stored instead of handing it
        back to a distributor that would then wait ``drain_timeout`` for it and log it as lost.
        """
        if self._routing is not None:
            self._routing.close()
            self._routing = None
        await self.distributor.drain(STORE_WAIT)  # jobs just sent: let the nodes store them
        left = self.left_behind()
        if left:
            log.warning(
                "cluster teardown: %d job(s) the test left unfinished end with the cluster: %s",
                len(left),
                summary(left),
            )
        if self.distributor.unstored_count():
            self.distributor.stop_in_loop()  # no drain: what no node stored is reported above
        else:
            await self.distributor.stop(drain_timeout=0.0)
        for node in self.nodes:
            await node.stop(grace=STOP_GRACE)

    def left_behind(self) -> list[JobState]:
        """The jobs enqueued to this cluster that have not finished (call on its loop)."""
        core = self.distributor.core
        held = {} if core is None else dict(core.jobs)
        for job in self.distributor.unstored():
            held.setdefault(job.id, job)
        return list(held.values())

    async def until_idle(self, timeout: float = 10.0) -> None:
        """Wait until no node has a job ready or running (jobs on timers may remain)."""
        for node in self.nodes:
            await node.until_idle(timeout)

    async def __aenter__(self) -> Cluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- on a loop thread of its own (sync tests, the pytest fixture) ------------------------------

    def __enter__(self) -> Cluster:
        if self._runtime is not None:
            raise ReactorError("this cluster already runs")
        runtime = self._runtime = Runtime(self.config)
        runtime.run()
        try:
            runtime.call(self.start)
        except BaseException:
            runtime.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is None:
            return
        try:
            runtime.call(self.stop)
        finally:
            runtime.stop()

    def run(
        self, name: str, args: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Enqueue ``name`` and wait for its final args (from a thread that is not the loop's).

        Raises:
            JobFailed: the job failed after its last attempt.
            JobTimeoutError: it did not finish within ``timeout`` seconds.
        """
        handle: JobHandle = self.enqueue(name, args)
        return handle.result(timeout)
