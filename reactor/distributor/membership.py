"""The group a distributor joins (``group=``): its durable outbox (``outbox=``) and its
announcement to nodes that discover distributors (``announce=``), both optional."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from reactor.core.jobstate import JobState
from reactor.distributor.handle import JobHandle

if TYPE_CHECKING:
    from reactor.distributor.driver import Distributor
    from reactor.distributor.outbox import Outbox
    from reactor.storage.discovery import Announcer


def open_outbox(
    distributor: Distributor,
    loop: asyncio.AbstractEventLoop,
    *,
    submit: Callable[[list[JobState]], None],
    lock: threading.Lock,
) -> Outbox | None:
    """The distributor's outbox, open on ``loop`` (None without ``outbox=``); it works at once,
    and ``start()`` also joins the group eagerly.

    Args:
        submit: takes the jobs the outbox wrote (or took over from a crashed member).
        lock: the lock of the distributor's handles (a taken-over job gets a handle too).
    """
    if distributor.outbox is None:
        return None
    from reactor.distributor.outbox import Outbox

    outbox = Outbox(
        distributor.outbox,
        group=distributor.group,
        session=distributor.session,
        lease=float(distributor.config["heartbeat_timeout"]),
        submit=submit,
        handle=functools.partial(JobHandle, distributor=distributor, lock=lock),
    )
    outbox.open(loop)
    return outbox


def make_announcer(distributor: Distributor) -> Announcer | None:
    """The distributor's announcement in Redis (None without ``announce=``)."""
    if distributor.announce is None:
        return None
    from reactor.storage.discovery import Announcer, advertised_address

    return Announcer(
        distributor.announce,
        group=distributor.group,
        session=distributor.session,
        address=advertised_address(distributor.host, distributor.port),
        lease=float(distributor.config["heartbeat_timeout"]),
        snapshot=distributor.snapshot,
    )
