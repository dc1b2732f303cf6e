"""The pytest plugin (entry point ``pytest11``): fixtures for testing applications that enqueue.

``reactor_capture``, ``reactor_eager`` and ``reactor_cluster`` each route ``JR.enqueue`` to a
test distributor for one test. The jobs come from the ``reactor_jobs`` fixture: the ``reactor_jobs``
ini option (a directory relative to the rootdir) or ``JR.config["job_directory"]``; override the
fixture in a ``conftest.py`` to hand in functions instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the reactor machinery loads only when a fixture is used
    from reactor.testing.capture import CapturingDistributor
    from reactor.testing.cluster import Cluster
    from reactor.testing.eager import EagerDistributor
    from reactor.testing.jobs import Jobs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "reactor_jobs",
        "job directory (relative to the rootdir) for reactor's reactor_eager/reactor_cluster "
        "fixtures; default: JR.config['job_directory']",
        default="",
    )


@pytest.fixture
def reactor_jobs(request: pytest.FixtureRequest) -> Jobs:
    """The jobs ``reactor_eager`` and ``reactor_cluster`` run; override it to pass functions."""
    configured = str(request.config.getini("reactor_jobs"))
    if configured:
        return Path(request.config.rootpath) / configured
    import reactor

    return Path(reactor.config["job_directory"])


@pytest.fixture
def reactor_capture() -> Iterator[CapturingDistributor]:
    """A :class:`~reactor.testing.CapturingDistributor` that ``JR.enqueue`` goes to."""
    from reactor.testing.capture import CapturingDistributor

    distributor = CapturingDistributor()
    with distributor.routing_facade():
        yield distributor


@pytest.fixture
def reactor_eager(reactor_jobs: Jobs) -> Iterator[EagerDistributor]:
    """An :class:`~reactor.testing.EagerDistributor` that ``JR.enqueue`` goes to."""
    from reactor.testing.eager import EagerDistributor

    distributor = EagerDistributor(reactor_jobs)
    with distributor.routing_facade():
        yield distributor


@pytest.fixture
def reactor_cluster(reactor_jobs: Jobs) -> Iterator[Cluster]:
    """A one-node :class:`~reactor.testing.Cluster` on its own loop thread; ``JR.enqueue``
    goes to it. Works in sync and async tests (``await handle`` from any loop)."""
    from reactor.testing.cluster import Cluster

    with Cluster(reactor_jobs, facade=True) as cluster:
        yield cluster
