"""NodePort: what the node's core asks of its driver (send, store, write, arm a timer, run)."""

from __future__ import annotations

from typing import Any, Protocol

from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P


class NodePort(Protocol):
    """What the core asks of its driver."""

    def send(self, link: str, message: P.Message | list[Any]) -> None:
        """Queue a message to the distributor ``link`` (``host:port``)."""

    def store(self, link: str, records: list[JobRecord]) -> bool:
        """Persist new records; True if done already, else the driver calls back later."""

    def write(self, record: JobRecord) -> None:
        """Persist the record's current state (written behind, in order)."""

    def remove(self, record: JobRecord) -> None:
        """Forget the record in storage."""

    def exists(self, records: list[JobRecord]) -> list[bool] | None:
        """Whether each record is still stored, or None when the answer comes later."""

    def arm(self, due: float) -> None:
        """Wake the core at monotonic time ``due`` (the earliest job timer changed)."""

    def kick(self) -> None:
        """Jobs are ready to run."""

    def starting(self, job: JobRecord, wall: float) -> None:
        """An attempt of ``job`` is about to begin (its ``run_at`` still says when it was due)."""

    def cancelled(self, job: JobRecord) -> None:
        """``job`` ends cancelled without an attempt that ran (a cancel or a destroy)."""

    def interrupt(self, job: JobRecord) -> None:
        """A cancel reached ``job``'s running attempt: stop it (async) or flag it (def)."""

    def adopt_limits_store(self, url: str) -> None:
        """A distributor's welcome named its ``limits_store`` and this node has none: use it."""

    def unknown(self, job: JobRecord) -> str:
        """The node has no job of this name: the error message it fails with."""

    def refused(self, link: str, kind: str, reason: str) -> None:
        """A distributor refused this node (name taken, protocol mismatch)."""

    def keep_result(self, name: str, message: list[Any]) -> None:
        """Keep a final FEEDBACK (wire list) of job ``name`` in the result store: its
        distributor may never hear of it (only called when :attr:`NodeCore.keeps_results`)."""
