"""The base of the test distributors that need no socket and no node: the same ``enqueue``
checks as a real :class:`~reactor.distributor.Distributor`, without the network."""

from __future__ import annotations

import datetime as dt
import itertools
from contextlib import AbstractContextManager
from typing import Any, Self

from reactor import protocol as P
from reactor.config import Config
from reactor.distributor import Distributor
from reactor.jobspec import check_options, timing
from reactor.testing.facade import facade_routed_to


class OfflineDistributor(Distributor):
    """A :class:`Distributor` whose ``enqueue`` the subclass fulfils in this process.

    It checks a job exactly as the real one does (name, options, msgpack-serialisable args), so a
    test fails where production would, and it is a ``Distributor``, so it goes wherever the
    application passes one. :meth:`routing_facade` sends ``JR.enqueue`` to it as well.
    """

    def __init__(self, *, config: Config | None = None) -> None:
        super().__init__("127.0.0.1", 0, config=config)
        self._counter = itertools.count(1)

    # A test distributor is always "running": it serves no socket.
    @property
    def started(self) -> bool:
        """Always true: nothing to bind."""
        return True

    async def start(self) -> None:
        """Nothing to start."""

    def start_in_loop(self, loop: Any) -> None:
        """Nothing to start."""

    async def stop(self) -> None:
        """Nothing to stop."""

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

    def _checked(
        self,
        name: str,
        args: dict[str, Any] | None,
        *,
        after: float | None,
        run_at: dt.datetime | float | None,
        period: float | None,
        node: str | None,
        not_node: str | None,
        on_success: Any,
        on_error: Any,
    ) -> tuple[str, bytes, float, float]:
        """Check a job like ``Distributor.enqueue`` does: ``(job id, packed args, delay, at)``.

        Raises:
            TypeError, ValueError, MessageTooLargeError: as ``Distributor.enqueue``.
        """
        check_options(name, period, node, not_node, on_success, on_error)
        max_size = int(self.config["max_message_size"]) - 1024
        packed = P.pack_args({} if args is None else args, max_size=max_size)
        delay, at = timing(after, run_at)
        return f"{self._id_prefix}{next(self._counter):x}", packed, delay, at
