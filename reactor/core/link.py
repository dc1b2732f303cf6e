"""A node's standing with one distributor: welcome, lease, sync, and what awaits acknowledgement.

A :class:`LinkState` is plain data plus the rules that read it. The node may start a job of this
distributor's session only while the link is *runnable*: welcomed, synced (the distributor has
confirmed which of the node's copies are current) and within its lease. The lease runs from the
node's own clock reading that the distributor last echoed: the distributor cannot have declared
the node gone before ``echo + heartbeat_timeout``, so until then no copy here was reassigned.
"""

from __future__ import annotations

from typing import Any

#: Share of heartbeat_timeout a lease lasts (the rest absorbs clock-rate differences).
LEASE_SHARE = 0.9
#: Assignments per Sync message.
SYNC_CHUNK = 5000

FeedbackKey = tuple[str, int, int]  # (job id, asg, seq)


class LinkState:
    """What a node knows about its connection to one distributor (keyed ``host:port``)."""

    __slots__ = (
        "dsession",
        "feedback",
        "given_up",
        "handbacks",
        "hello_at",
        "key",
        "lease_until",
        "refused",
        "sync_at",
        "sync_id",
        "synced",
        "welcomed",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.dsession = ""  # the distributor's session, once welcomed
        self.welcomed = False
        self.synced = False
        self.lease_until = 0.0
        self.given_up = -1.0  # == lease_until: silent past node_lost_after, jobs run anyway
        self.sync_id = 0
        self.sync_at = 0.0
        self.hello_at = -1e18
        self.refused: tuple[str, str] | None = None  # (kind, reason) of a refused hello
        #: Unacknowledged feedback, oldest send first: key -> [message, last sent].
        self.feedback: dict[FeedbackKey, list[Any]] = {}
        #: Unacknowledged hand-backs: job id -> [asg, item, last sent].
        self.handbacks: dict[str, list[Any]] = {}

    def runnable(self, now: float) -> bool:
        """Whether jobs of this distributor's current session may start now: within a synced
        lease, or on the node's own authority once it was silent past ``node_lost_after``
        (:meth:`abandoned`) and until it is heard again (a welcome renews the lease)."""
        return (self.synced and now < self.lease_until) or self.given_up == self.lease_until

    def abandoned(self, now: float, timeout: float, lost_after: float) -> bool:
        """Whether the distributor's session has been silent past ``lost_after`` since it last
        echoed this node (once per silence). Alive behind a partition, it has declared the node
        lost and given its jobs to other nodes by now; dead, it never will, and nobody but this
        node is left to run them."""
        return (
            bool(self.dsession)
            and not self.welcomed
            and self.given_up != self.lease_until
            and now - (self.lease_until - LEASE_SHARE * timeout) >= lost_after
        )

    def renew(self, stamp: float, timeout: float, now: float) -> None:
        """The distributor echoed our clock reading ``stamp``: extend the lease (a reading from
        the future is not ours, and would make the lease last forever: it is ignored)."""
        until = stamp + LEASE_SHARE * timeout
        if until > self.lease_until and stamp <= now:
            self.lease_until = until

    def lapse(self) -> None:
        """Forget the welcome: the node must say hello and sync again before it runs jobs."""
        self.welcomed = False
        self.synced = False

    def due_again(self, now: float, rto: float) -> list[list[Any]]:
        """Feedback messages unacknowledged for ``rto`` seconds, marked as sent now."""
        due: list[list[Any]] = []
        limit = now - rto
        for entry in self.feedback.values():
            if entry[1] > limit:
                break
            due.append(entry[0])
        for message in due:
            entry = self.feedback.pop((message[1], message[2], message[3]))
            entry[1] = now
            self.feedback[(message[1], message[2], message[3])] = entry
        return due

    def handbacks_due(self, now: float, rto: float) -> list[Any]:
        """Hand-back items unacknowledged for ``rto`` seconds, marked as sent now."""
        items: list[Any] = []
        for entry in self.handbacks.values():
            if now - entry[2] >= rto:
                entry[2] = now
                items.append(entry[1])
        return items
