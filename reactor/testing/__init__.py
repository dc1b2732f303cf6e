"""Helpers for testing applications that use reactor, without starting node processes.

- :class:`Cluster`: a distributor and nodes in this process (the real machinery), as an async
  context manager (``async with``, on the running loop) or a plain one (its own loop thread).
- :class:`EagerDistributor`: ``enqueue`` runs the job inline and calls its feedback.
- :class:`CapturingDistributor`: ``enqueue`` records jobs; ``assert_enqueued(...)`` checks them.

Each routes ``JR.enqueue`` to itself on request (``Cluster(facade=True)``,
``routing_facade()``), and the pytest plugin (installed with the package) offers them as the
fixtures ``reactor_cluster``, ``reactor_eager`` and ``reactor_capture``. The README's "Testing
your application" section shows them in use.

The project's own tests use :mod:`reactor.testing.support` (ports, waits, node processes); its
names stay importable from here for older imports.
"""

from __future__ import annotations

from reactor.testing.capture import CapturingDistributor
from reactor.testing.cluster import Cluster
from reactor.testing.eager import EagerDistributor
from reactor.testing.facade import facade_routed_to
from reactor.testing.jobs import Jobs, registry_from
from reactor.testing.offline import EnqueuedJob, OfflineDistributor
from reactor.testing.support import NodeProcess as NodeProcess
from reactor.testing.support import async_wait_until as async_wait_until
from reactor.testing.support import free_port as free_port
from reactor.testing.support import wait_until as wait_until

__all__ = [
    "CapturingDistributor",
    "Cluster",
    "EagerDistributor",
    "EnqueuedJob",
    "Jobs",
    "OfflineDistributor",
    "facade_routed_to",
    "registry_from",
]
