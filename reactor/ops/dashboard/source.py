"""What the dashboard shows, read from Redis: announced distributors and their nodes, stored jobs.

Distributors come from :func:`~reactor.storage.discovery.list_announcements` (each carries
the distributor's :meth:`~reactor.distributor.driver.Distributor.snapshot`, nodes included); stored
jobs come from :class:`reactor.ops.monitor.RedisMonitor`, whose synchronous calls run in threads so
the server's loop stays free. Counting a node's jobs per status reads every record, so it runs in
the background while someone looks, never inside a page request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

from reactor.errors import StorageUnavailableError
from reactor.jobs.record import FAILED
from reactor.ops.monitor import RedisMonitor
from reactor.storage.client import Client, make_client
from reactor.storage.discovery import Announcement, list_announcements
from reactor.storage.flows import read_flow
from reactor.storage.progress import StoredProgress, progress_of

from .rates import Rates

log = logging.getLogger("reactor.dashboard")

#: Seconds between two readings of the announcements (the jobs-per-second chart).
SAMPLE_EVERY: Final = 2.0
#: Seconds between two counts of each node's jobs per status, while someone looks.
COUNT_EVERY: Final = 10.0
#: A count runs only if a page was served within this many seconds.
VIEWED_WITHIN: Final = 60.0
#: Failed jobs listed per node on the failures page.
FAILURES_PER_NODE: Final = 100


@dataclass
class NodeRow:
    """One node as one distributor sees it."""

    name: str
    distributor: str
    alive: bool
    accepting: bool
    load: int
    capacity: int
    heard_ago: float | None
    where: str


@dataclass
class Overview:
    """The overview page's data."""

    distributors: list[Announcement]
    nodes: list[NodeRow]
    stored: list[str]
    counts: dict[str, dict[str, int]]
    counted_at: float
    rates: list[tuple[float, float]]
    errors: list[str] = field(default_factory=list)


class Source:
    """The dashboard's reads and its two actions (retry, destroy).

    Args:
        url: the Redis the nodes store jobs in and distributors announce to.
        prefix: the nodes' storage key prefix.
    """

    def __init__(self, url: str, *, prefix: str = "reactor") -> None:
        self.url = url
        self.prefix = prefix
        self._monitor: RedisMonitor | None = None
        self.rates = Rates()
        self.counts: dict[str, dict[str, int]] = {}
        self.counted_at = 0.0
        self.viewed_at = 0.0
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._last: list[Announcement] = []

    @property
    def monitor(self) -> RedisMonitor:
        """The stored jobs' reader (made by :meth:`start`)."""
        assert self._monitor is not None, "Source.start() was not called"
        return self._monitor

    async def start(self) -> None:
        """Connect and start sampling in the background."""
        self._monitor = RedisMonitor(self.url, prefix=self.prefix)
        self._client = make_client(self.url)
        self._task = asyncio.create_task(self._sample_loop(), name="reactor-dashboard-sampler")

    async def close(self) -> None:
        """Stop sampling and close the connections."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()
        if self._monitor is not None:
            self._monitor.close()

    # -- background --------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        next_count = 0.0
        while True:
            try:
                await self.announcements()
                now = time.monotonic()
                if now >= next_count and now - self.viewed_at < VIEWED_WITHIN:
                    next_count = now + COUNT_EVERY
                    await self.count()
            except Exception as exc:  # keep sampling: Redis may come back
                log.warning("dashboard: reading Redis failed: %s", exc)
            await asyncio.sleep(SAMPLE_EVERY)

    async def count(self) -> None:
        """Count every stored node's jobs per status (reads every record: background only)."""
        stored = await asyncio.to_thread(self.monitor.nodes)
        counts = {}
        for node in stored:
            counts[node] = await asyncio.to_thread(self.monitor.counts, node)
        self.counts, self.counted_at = counts, time.time()

    # -- reads -------------------------------------------------------------------------------

    async def announcements(self) -> list[Announcement]:
        """The live announcements; their ``finished`` counters feed the rate chart."""
        assert self._client is not None, "Source.start() was not called"
        found = await list_announcements(self._client, prefix=self.prefix)
        for a in found:
            taken_at, finished = a.snapshot.get("taken_at"), a.snapshot.get("finished")
            if isinstance(taken_at, int | float) and isinstance(finished, int | float):
                self.rates.add(a.session, float(taken_at), float(finished))
        self.rates.forget_older_than(time.time() - self.rates.window)
        self._last = found
        return found

    async def overview(self) -> Overview:
        """Distributors, their nodes, stored nodes, counts per status and the rate series."""
        self.viewed_at = time.monotonic()
        errors: list[str] = []
        try:
            distributors = await self.announcements()
        except Exception as exc:
            distributors = self._last
            errors.append(f"cannot read the announcements: {exc}")
        try:
            stored = await asyncio.to_thread(self.monitor.nodes)
        except StorageUnavailableError as exc:
            stored = []
            errors.append(str(exc))
        if not self.counted_at:  # the first look: count now, so the page is never empty
            with contextlib.suppress(StorageUnavailableError):
                await self.count()
        nodes = [row for a in distributors for row in _node_rows(a)]
        return Overview(
            distributors=distributors,
            nodes=sorted(nodes, key=lambda r: (r.name, r.distributor)),
            stored=stored,
            counts=self.counts,
            counted_at=self.counted_at,
            rates=self.rates.series(time.time()),
            errors=errors,
        )

    async def jobs_page(
        self,
        node: str,
        *,
        status: str | None,
        name: str | None,
        cursor: int,
        limit: int = 20,
        tags: list[str] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of a node's jobs (SSCAN paging, filtered inside Redis; ``tags``: every one
        must match)."""
        self.viewed_at = time.monotonic()
        return await asyncio.to_thread(
            lambda: self.monitor.jobs_page(
                node, status=status or None, name=name or None, limit=limit, cursor=cursor,
                tags=tags or None,
            )
        )  # fmt: skip

    async def job(self, job_id: str) -> dict[str, Any] | None:
        """One job's record, args decoded, or None."""
        return await asyncio.to_thread(self.monitor.load, job_id)

    async def progress(self, record: dict[str, Any]) -> StoredProgress | None:
        """The latest progress the running attempt of ``record`` reported, as its node stored
        it (about once a second; see :func:`~reactor.storage.progress.progress_of`)."""
        return await asyncio.to_thread(progress_of, self.monitor.redis, self.prefix, record)

    async def flow(self, flow_id: str) -> dict[str, Any] | None:
        """A durable flow's status and steps (``reactor.storage.flows.describe``), or None."""

        def read() -> dict[str, Any] | None:
            try:
                return read_flow(self.monitor.redis, flow_id, self.prefix)
            except ValueError:  # an unreadable record shows as none
                return None

        return await asyncio.to_thread(read)

    async def failures(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Failed jobs (up to :data:`FAILURES_PER_NODE` per node) and quarantined records."""
        self.viewed_at = time.monotonic()

        def read() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
            failed: list[dict[str, Any]] = []
            quarantined: dict[str, dict[str, Any]] = {}
            for node in self.monitor.nodes():
                failed += self.monitor.jobs_page(node, status=FAILED, limit=FAILURES_PER_NODE)[0]
                for job_id, entry in self.monitor.quarantined(node).items():
                    quarantined[job_id] = {**entry, "node": node}
            failed.sort(key=lambda r: -(r.get("failed_at") or 0.0))
            return failed, quarantined

        return await asyncio.to_thread(read)

    # -- actions -----------------------------------------------------------------------------

    async def retry(self, job_id: str) -> bool:
        """Run a failed job again (see :meth:`RedisMonitor.retry`)."""
        return await asyncio.to_thread(self.monitor.retry, job_id)

    async def cancel(self, job_id: str) -> bool:
        """Cancel a stored job on its node (see :meth:`RedisMonitor.cancel`)."""
        return await asyncio.to_thread(self.monitor.cancel, job_id)

    async def destroy(self, job_id: str) -> bool:
        """Delete a job's record (see :meth:`RedisMonitor.destroy`)."""
        return await asyncio.to_thread(self.monitor.destroy, job_id)


def _node_rows(a: Announcement) -> list[NodeRow]:
    """The nodes in one distributor's snapshot, with heartbeat ages as of now."""
    snapshot = a.snapshot
    taken_at = snapshot.get("taken_at")
    since = time.time() - taken_at if isinstance(taken_at, int | float) else 0.0
    rows = []
    nodes = snapshot.get("nodes")
    for n in nodes if isinstance(nodes, list) else []:
        if not isinstance(n, dict):
            continue
        heard = n.get("heard_ago")
        rows.append(
            NodeRow(
                name=str(n.get("name", "?")),
                distributor=a.address,
                alive=bool(n.get("alive")),
                accepting=bool(n.get("accepting")),
                load=int(n.get("load") or 0),
                capacity=int(n.get("capacity") or 0),
                heard_ago=float(heard) + max(0.0, since)
                if isinstance(heard, int | float)
                else None,
                where=str(n.get("where") or ""),
            )
        )
    return rows
