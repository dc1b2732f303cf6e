"""The ledgers: what each application accepted and heard, and what each node ran.

An application appends to ``app-<name>.ledger`` (fsynced) one line per event::

    incarnation <pid> <time>                       a (re)started application process
    accepted <job id> <nid> <kind> <not_node|-> <time>   enqueue returned (written right after)
    outcome <nid> <success|error> <type name> <time>     on_success / on_error ran
    refused <error type> <time>                    enqueue raised: the job is not accepted

``nid`` is the application's own tag for the job (``<app>-<pid>-<n>``), carried in its args, so
a callback that runs before the ``accepted`` line is written still names its job. The nodes'
jobs (``jobs/nemesis_jobs.py``) append ``<start|ok|fail> <job id> <node> <attempt> <pid> <time>``
to ``runs-<node>.ledger``. A process killed mid-line leaves a torn line, which readers skip.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class LedgerWriter:
    """Append-only lines, each fsynced before :meth:`write` returns; thread-safe."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def write(self, *fields: object) -> None:
        line = " ".join(str(f) for f in (*fields, f"{time.time():.6f}")) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


@dataclass(frozen=True)
class Accepted:
    """A job whose enqueue returned."""

    job_id: str
    nid: str
    app: str
    kind: str
    not_node: str | None
    at: float


@dataclass(frozen=True)
class Run:
    """One line of a node's run ledger."""

    event: str  # start, ok or fail
    job_id: str
    node: str
    attempt: int
    pid: int
    at: float


@dataclass
class Ledgers:
    """Everything the ledgers of one run say so far."""

    accepted: dict[str, Accepted] = field(default_factory=dict)  # job id -> accepted
    callbacks: dict[str, list[str]] = field(default_factory=dict)  # job id -> outcomes heard
    orphan_callbacks: int = 0  # outcomes for a nid never accepted (killed before the line)
    refused: int = 0
    incarnations: int = 0
    runs: dict[str, list[Run]] = field(default_factory=dict)  # job id -> runs

    def outcome_count(self) -> int:
        return sum(len(v) for v in self.callbacks.values())


def _lines(path: Path) -> Iterator[list[str]]:
    with open(path, errors="replace") as f:
        for line in f:
            if line.endswith("\n"):  # a torn last line (SIGKILL mid-write) is skipped
                yield line.split()


def _read_app(path: Path, into: Ledgers) -> None:
    app = path.name.removeprefix("app-").removesuffix(".ledger")
    heard: list[tuple[str, str]] = []  # (nid, "success:Type")
    by_nid: dict[str, str] = {}
    for parts in _lines(path):
        match parts:
            case ["accepted", job_id, nid, kind, not_node, at]:
                nn = None if not_node == "-" else not_node
                into.accepted[job_id] = Accepted(job_id, nid, app, kind, nn, float(at))
                by_nid[nid] = job_id
            case ["outcome", nid, outcome, type_name, _]:
                heard.append((nid, f"{outcome}:{type_name}"))
            case ["refused", *_]:
                into.refused += 1
            case ["incarnation", *_]:
                into.incarnations += 1
    for nid, outcome in heard:
        known = by_nid.get(nid)
        if known is None:
            into.orphan_callbacks += 1
        else:
            into.callbacks.setdefault(known, []).append(outcome)


def _read_runs(path: Path, into: Ledgers) -> None:
    for parts in _lines(path):
        if len(parts) != 6 or parts[0] not in ("start", "ok", "fail"):
            continue
        try:
            run = Run(parts[0], parts[1], parts[2], int(parts[3]), int(parts[4]), float(parts[5]))
        except ValueError:
            continue
        into.runs.setdefault(run.job_id, []).append(run)


def read(directory: Path) -> Ledgers:
    """Every ledger under ``directory``, read now."""
    ledgers = Ledgers()
    for path in sorted(directory.glob("app-*.ledger")):
        _read_app(path, ledgers)
    for path in sorted(directory.glob("runs-*.ledger")):
        _read_runs(path, ledgers)
    return ledgers
