"""A distributor's Redis services for deployed applications: its announcement (``announce=``),
its durable outbox (``outbox=``) and its result store (``result_store=``).

The distributor calls these hooks at its lifecycle points and leaves the rest to this object,
which imports the Redis modules only when one of the services is asked for.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

from reactor import protocol as P
from reactor.core.routing import JobState
from reactor.errors import ReactorError
from reactor.handle import JobHandle

if TYPE_CHECKING:
    from reactor.discovery import Announcer
    from reactor.distributor import Distributor
    from reactor.outbox import Outbox
    from reactor.results import ResultWriter


class Services:
    """The Redis services one distributor was asked for (see the module docstring).

    Args:
        distributor: the distributor they serve.
        announce: where to announce it, or None.
        group: its application's group (outbox take-over happens within a group).
        outbox: where its outbox lives, or None.
        result_store: where final outcomes are kept, or None.
    """

    def __init__(
        self,
        distributor: Distributor,
        *,
        announce: str | None,
        group: str,
        outbox: str | None,
        result_store: str | None,
    ) -> None:
        self._distributor = distributor
        self._announce = announce
        self._group = group
        self._outbox_url = outbox
        self._lock = threading.Lock()  # shared by the handles of jobs taken over
        self._stopped = False
        self.announcer: Announcer | None = None
        self.outbox: Outbox | None = None
        self.results: ResultWriter | None = None
        if result_store is not None:
            from reactor.results import ResultWriter

            ttl = float(distributor.config["result_ttl"])
            self.results = ResultWriter(result_store, ttl=ttl)

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """The distributor is bound: the outbox takes jobs from now on (from ``loop``'s thread)."""
        d = self._distributor
        lease = float(d.config["heartbeat_timeout"])
        if self._outbox_url is not None:
            from reactor.outbox import Outbox

            self.outbox = Outbox(
                self._outbox_url,
                group=self._group,
                session=d.session,
                lease=lease,
                submit=self._accept,
                handle=lambda job_id, name: JobHandle(job_id, name, d, self._lock),
            )
            self.outbox.open(loop)
        if self._announce is not None:
            from reactor.discovery import Announcer, advertised_address

            self.announcer = Announcer(
                self._announce,
                group=self._group,
                session=d.session,
                address=advertised_address(d.host, d.port),
                lease=lease,
                snapshot=d.snapshot,
            )

    async def start(self) -> None:
        """Join the outbox group and announce the distributor (which is already serving).

        Raises:
            StorageUnavailableError: the outbox's Redis cannot be reached.
        """
        if self.outbox is not None:
            await self.outbox.start()
        if self.announcer is not None:
            await self.announcer.start()

    def tick(self) -> None:
        """Every heartbeat: renew the announcement and the outbox lease, sweep the outbox."""
        if self.announcer is not None:
            self.announcer.renew()
        if self.outbox is not None:
            self.outbox.tick(self._stored)

    def final(self, job: JobState, fb: P.Feedback | None) -> None:
        """A job ended (``fb`` None: the application cancelled it): keep its outcome."""
        if self.results is not None:
            self.results.record(job.id, job.name, fb)

    async def stop(self) -> None:
        """Leave the outbox group (jobs no node stored are left for the others), withdraw the
        announcement, write the last outcomes."""
        self._stopped = True
        outbox, self.outbox = self.outbox, None
        if outbox is not None:
            await outbox.stop(self._stored)
        announcer, self.announcer = self.announcer, None
        if announcer is not None:
            await announcer.stop()
        if self.results is not None:
            await self.results.close()

    def _accept(self, jobs: list[JobState]) -> None:
        """Jobs the outbox has written (or taken over from a crashed member) go to the core."""
        core = self._distributor.core
        if core is None or self._stopped:
            error = ReactorError("the distributor stopped before the job finished")
            for job in jobs:
                job.handle._resolve(None, error)
            return
        now = time.monotonic()
        for job in jobs:
            core.submit(job, now)
        core.pump(now)

    def _stored(self, job: JobState) -> bool:
        """Whether a node has stored ``job`` (or it ended): its outbox entry may go."""
        core = self._distributor.core
        return job.acked or core is None or core.jobs.get(job.id) is not job
