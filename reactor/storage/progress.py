"""A running job's latest progress as a node keeping jobs in Redis stores it for the dashboard.

One small string key per job, ``{prefix}:{<node>}:progress:<job_id>``, beside the job's record
and under the node's hash tag (one Cluster slot with the node's other keys). It holds a JSON
object: ``fraction`` (0 to 1), ``note`` (a string or null), ``at`` (the epoch time of the
report) and ``attempt``. The node writes it at most once a second per job and deletes it when
the attempt ends; a key a node could not delete (it died) expires after the node's
``result_ttl``. The job's record itself is never touched: progress is a hint, not a record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reactor.jobs.record import IN_PROGRESS
from reactor.storage.client import SyncClient


def progress_key(prefix: str, node: str, job_id: str) -> str:
    """The string key holding a running job's latest progress (the node's hash tag)."""
    return f"{prefix}:{{{node}}}:progress:{job_id}"


@dataclass(frozen=True)
class StoredProgress:
    """A job's latest progress as the dashboard reads it."""

    fraction: float
    note: str | None
    at: float  # epoch seconds of the report
    attempt: int

    @property
    def percent(self) -> int:
        """The fraction as a whole percentage (0 to 100)."""
        return round(self.fraction * 100)


def encode_progress(fraction: float, note: str | None, at: float, attempt: int) -> bytes:
    """The key's value for one report."""
    body = {"fraction": fraction, "note": note, "at": at, "attempt": attempt}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_progress(raw: bytes | str | None) -> StoredProgress | None:
    """The stored progress, or None for no key or a value that does not parse (a hint: never
    an error)."""
    if raw is None:
        return None
    try:
        body: Any = json.loads(raw)
        fraction = float(body["fraction"])
        note = body.get("note")
        return StoredProgress(
            fraction=min(1.0, max(0.0, fraction)),
            note=note if isinstance(note, str) else None,
            at=float(body["at"]),
            attempt=int(body["attempt"]),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def read_progress(redis: SyncClient, prefix: str, node: str, job_id: str) -> StoredProgress | None:
    """Read one job's stored progress with a synchronous client (plain or Cluster)."""
    return decode_progress(redis.get(progress_key(prefix, node, job_id)))


def progress_of(redis: SyncClient, prefix: str, record: Mapping[str, Any]) -> StoredProgress | None:
    """The progress to show beside a stored job's ``record`` (as the monitor loads it): its
    node's latest report while the record says the job is in progress and the report is of the
    record's attempt; otherwise None (a key a dead node left behind, say, expires on its own)."""
    node, job_id = record.get("node"), record.get("id")
    if record.get("status") != IN_PROGRESS or not isinstance(node, str) or job_id is None:
        return None
    found = read_progress(redis, prefix, node, str(job_id))
    return found if found is not None and found.attempt == record.get("attempt") else None
