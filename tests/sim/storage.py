"""A simulated node's storage, and the storage faults of a seed (after TigerBeetle's VOPR).

Durable storage stands for Redis: the node writes behind, in order, and the write is acknowledged
once its batch is written. The faults are those Redis can really show a node:

- **lost writes**: Redis restarts (or fails over to a replica) and loses the writes of its last
  ``torn_tail`` seconds (``appendfsync everysec``); the node process lives on with jobs whose
  records are gone or older than it knows;
- **delayed write-behind**: a slow store acknowledges each batch up to ``flush_delay`` later;
- **corrupt records**: a record reads back unreadable at the node's restart and is quarantined
  (``reactor.storage.redis_resume``), so the node resumes without it.

Writes are not reordered: a node's keys share one hash tag, so one connection to one master
writes them in order, which the node's write-behind relies on; a fault Redis cannot produce
would only test the simulation.

Every seed draws its storage faults from a stream of its own, so the seeds whose schedules are
kept as regressions replay the same jobs and network faults as before. The checker forgives a
job exactly what a fault did to it: ``touched`` names every job whose record a fault lost,
rolled back or quarantined (such a job may end in ``JobLost``, a failure no run caused).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from reactor.jobs.record import JobRecord


@dataclass
class StorageFaults:
    """How a seed's durable storage misbehaves (all zero: it never does)."""

    torn_tail: float = 0.0
    flush_delay: float = 0.0
    corrupt: float = 0.0
    restarts: int = 0

    @classmethod
    def draw(cls, seed: int) -> StorageFaults:
        """Half the seeds get no storage fault; the others a random mix."""
        rng = random.Random(seed * 7919 + 104729)  # not the world's stream: see the docstring
        if rng.random() < 0.5:
            return cls()
        return cls(
            torn_tail=rng.choice([0.0, 0.2, 1.0]),
            flush_delay=rng.choice([0.0, 0.0, 0.05, 0.5]),
            corrupt=rng.choice([0.0, 0.0, 0.1, 0.3]),
            restarts=rng.choice([0, 1, 2]),
        )

    @property
    def any(self) -> bool:
        return bool(self.torn_tail or self.flush_delay or self.corrupt)


class Storage:
    """A node's storage: memory (dies with the process) or durable (written behind)."""

    def __init__(self, durable: bool, faults: StorageFaults | None = None, seed: int = 0) -> None:
        self.durable = durable
        self.faults = faults or StorageFaults()
        self.rng = random.Random(seed)
        self.records: dict[str, dict[str, Any]] = {}
        #: Writes Redis has not synced yet: (written at, job id, the record before it).
        self._unsynced: list[tuple[float, str, dict[str, Any] | None]] = []
        #: Jobs whose records a fault lost, rolled back or quarantined.
        self.touched: set[str] = set()

    def put(self, job: JobRecord, now: float = 0.0) -> None:
        if self.durable:
            self._remember(job.id, now)
            self.records[job.id] = job.to_dict()

    def drop(self, job_id: str, now: float = 0.0) -> None:
        self._remember(job_id, now)
        self.records.pop(job_id, None)

    def _remember(self, job_id: str, now: float) -> None:
        tail = self.faults.torn_tail
        if tail:
            unsynced = self._unsynced
            while unsynced and unsynced[0][0] < now - tail:
                unsynced.pop(0)  # synced to disk: a restart keeps it
            unsynced.append((now, job_id, self.records.get(job_id)))

    def restart(self, now: float) -> None:
        """Redis restarted: the writes of its last ``torn_tail`` seconds are lost."""
        for at, job_id, before in reversed(self._unsynced):
            if at >= now - self.faults.torn_tail:
                self.touched.add(job_id)
                if before is None:
                    self.records.pop(job_id, None)
                else:
                    self.records[job_id] = before
        self._unsynced.clear()

    def read_back(self) -> list[JobRecord]:
        """The records a restarted node resumes; each may read back corrupt (quarantined)."""
        records = []
        for job_id in list(self.records):
            if self.faults.corrupt and self.rng.random() < self.faults.corrupt:
                del self.records[job_id]  # moved aside: never resumed, never read again
                self.touched.add(job_id)
            else:
                records.append(JobRecord.from_dict(dict(self.records[job_id])))
        return records

    def flush_delay(self) -> float:
        """How much later than usual this batch's write is acknowledged."""
        delay = self.faults.flush_delay
        return self.rng.uniform(0.0, delay) if delay else 0.0
