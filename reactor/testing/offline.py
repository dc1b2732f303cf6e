"""The base of the test distributors that need no socket and no node: the same ``enqueue``
checks as a real :class:`~reactor.distributor.driver.Distributor`, without the network."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Self

from reactor.config import Config
from reactor.core.jobstate import JobState
from reactor.distributor.driver import Distributor
from reactor.distributor.handle import JobHandle
from reactor.testing.facade import facade_routed_to
from reactor.wire import protocol as P


class OfflineDistributor(Distributor):
    """A :class:`Distributor` whose ``enqueue`` the subclass fulfils in this process.

    It checks a job exactly as the real one does (name, options, msgpack-serialisable args), so a
    test fails where production would, and it is a ``Distributor``, so it goes wherever the
    application passes one. :meth:`routing_facade` sends ``JR.enqueue`` to it as well.
    Subclasses implement :meth:`accept`; ``unique_key`` works as in production (in memory).
    """

    def __init__(self, *, config: Config | None = None) -> None:
        super().__init__("127.0.0.1", 0, config=config)
        self._max_args = int(self.config["max_message_size"]) - 1024  # as start() sets it

    # A test distributor is always "running": it serves no socket.
    @property
    def started(self) -> bool:
        """Always true: nothing to bind."""
        return True

    async def start(self) -> None:
        """Nothing to start."""

    def start_in_loop(self, loop: Any) -> None:
        """Nothing to start."""

    async def stop(self, *, drain_timeout: float | None = None) -> int:
        """Nothing to stop and nothing held: 0 jobs left undelivered."""
        return 0

    def stop_in_loop(self) -> None:
        """Nothing to stop."""

    def cancel(self, job_id: str) -> None:
        """Nothing runs in the background: there is nothing to cancel."""

    def snapshot(self) -> dict[str, Any]:
        """An empty live view: no nodes, nothing waiting."""
        return {"address": "offline", "nodes": [], "waiting": 0}

    def routing_facade(self) -> AbstractContextManager[Self]:
        """A context manager routing ``JR.enqueue`` to this distributor inside its block."""
        return facade_routed_to(self)

    def _admit(self) -> None:
        """Always running, and no waiting buffer: nothing to refuse."""

    def _accept(self, job: JobState) -> None:
        """The job passed every check of ``enqueue`` (and is not a unique duplicate)."""
        wire = P.Job(*job.message(time.monotonic())[P.JOB_ID :])
        now = time.time()
        self.accept(
            EnqueuedJob(
                job.id,
                job.name,
                wire.args,
                # The distributor keeps when the job is due, not the delay given: microseconds
                # have passed since, and the delay reads as given to the millisecond.
                round(wire.delay, 3) if not wire.run_at else wire.run_at - now,
                wire.run_at,
                wire.period,
                wire.defer,
                job.node,
                job.not_node,
                now,
                job.handle,
                timeout=wire.timeout,
                max_attempt=wire.max_attempt,
                cron=wire.cron,
                tz=wire.tz,
                priority=wire.priority,
                tags=wire.tags,
            )
        )

    def accept(self, job: EnqueuedJob) -> None:
        """Fulfil one checked enqueue (run it, record it, ...)."""
        raise NotImplementedError


@dataclass(slots=True)
class EnqueuedJob:
    """One checked enqueue, as an offline distributor received it.

    ``packed`` is the msgpack of the args (:attr:`args` decodes it, as a node would); ``delay``
    is the seconds from the enqueue until the job is due (``after=``, or ``run_at=`` minus the
    enqueue's wall time).
    """

    id: str
    name: str
    packed: bytes = field(repr=False)
    delay: float
    run_at: float
    period: float | None
    defer: bool
    node: str | None
    not_node: str | None
    enqueued_at: float
    handle: JobHandle = field(repr=False)
    timeout: float | None = None
    max_attempt: int | None = None
    cron: str | None = None
    tz: str | None = None
    priority: int = 0
    tags: list[str] | None = None
    cancelled: bool = False

    @property
    def args(self) -> dict[str, Any]:
        """The job's args, decoded afresh (a node's view of them)."""
        return P.unpack_args(self.packed)
