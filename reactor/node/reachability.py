"""Whether a node has reached each of its distributors: warnings with backoff while it has not,
and a count of reconnects.

A node pointed at a wrong host or port would otherwise log "started" and then nothing: ZeroMQ
dials quietly forever. :class:`Reachability` is fed the welcome state of each link on the node's
heartbeat tick (no I/O, no clock of its own) and says so at WARNING, naming the address, after
:data:`FIRST_WARNING` seconds, then again after 10, 20, 40, ... seconds, capped at
:data:`MAX_GAP`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

log = logging.getLogger("reactor.node")

#: Seconds without a welcome before the first warning.
FIRST_WARNING: Final = 5.0
#: The longest gap between two warnings about one distributor.
MAX_GAP: Final = 300.0


class _Watch:
    __slots__ = ("ever", "gap", "next_warning", "since", "welcomed")

    def __init__(self, now: float) -> None:
        self.welcomed = False
        self.ever = False  # welcomed at least once: a later welcome is a reconnect
        self.since = now  # when it became unreached
        self.gap = FIRST_WARNING
        self.next_warning = now + FIRST_WARNING


class Reachability:
    """Watches a node's links to its distributors.

    Args:
        node: the node's name (for messages).
        on_reconnect: called each time a link that had been welcomed is welcomed again.
    """

    def __init__(self, node: str, on_reconnect: Callable[[], None] | None = None) -> None:
        self.node = node
        self.on_reconnect = on_reconnect
        self.warnings = 0
        self._links: dict[str, _Watch] = {}

    def check(self, key: str, welcomed: bool, now: float) -> None:
        """The link to distributor ``key`` is (not) welcomed at monotonic ``now``."""
        watch = self._links.get(key)
        if watch is None:
            watch = self._links[key] = _Watch(now)
        if welcomed:
            if not watch.welcomed:
                if watch.ever and self.on_reconnect is not None:
                    self.on_reconnect()
                if watch.gap > FIRST_WARNING:  # it was warned about
                    log.info(
                        "node %s reached distributor %s after %.0fs",
                        self.node,
                        key,
                        now - watch.since,
                        extra={"node": self.node},
                    )
                watch.welcomed = watch.ever = True
            return
        if watch.welcomed:  # lost it: start counting again
            watch.welcomed = False
            watch.since = now
            watch.gap = FIRST_WARNING
            watch.next_warning = now + FIRST_WARNING
            return
        if now < watch.next_warning:
            return
        self.warnings += 1
        log.warning(
            "node %s has not reached distributor %s for %.0fs; is it running, and are the host "
            "and port right? still dialing",
            self.node,
            key,
            now - watch.since,
            extra={"node": self.node},
        )
        watch.gap = min(MAX_GAP, watch.gap * 2)
        watch.next_warning = now + watch.gap
