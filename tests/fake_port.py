"""A NodePort for driving a real NodeCore by hand, on a fake clock (unit tests of the core)."""

from __future__ import annotations

from typing import Any

from reactor.jobs.record import JobRecord
from reactor.wire import protocol as P


class RecordingPort:
    """Remembers what the core sent and the timers it armed; stores and writes nothing, says
    every record exists, and fails the test if a distributor refuses the node."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.armed: list[float] = []
        self.kept: list[tuple[str, list[Any]]] = []
        self.interrupted: list[str] = []

    def send(self, link: str, message: P.Message | list[Any]) -> None:
        self.sent.append(message)

    def store(self, link: str, records: list[JobRecord]) -> bool:
        return True

    def write(self, record: JobRecord) -> None:
        pass

    def remove(self, record: JobRecord) -> None:
        pass

    def exists(self, records: list[JobRecord]) -> list[bool] | None:
        return [True] * len(records)

    def arm(self, due: float) -> None:
        self.armed.append(due)

    def kick(self) -> None:
        pass

    def cancelled(self, job: JobRecord) -> None:
        pass

    def interrupt(self, job: JobRecord) -> None:
        self.interrupted.append(job.id)

    def starting(self, job: JobRecord, wall: float) -> None:
        pass

    def unknown(self, job: JobRecord) -> str:
        return f"no job named {job.name!r}"

    def refused(self, link: str, kind: str, reason: str) -> None:
        raise AssertionError(f"distributor {link} refused the node ({kind}): {reason}")

    def keep_result(self, name: str, message: list[Any]) -> None:
        self.kept.append((name, message))
