"""Routes the ``reactor`` module facade's enqueues (``JR.enqueue``) to a test's distributor."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

from reactor.app.runtime import Runtime
from reactor.distributor.driver import Distributor
from reactor.errors import ReactorError

D = TypeVar("D", bound=Distributor)


@contextlib.contextmanager
def facade_routed_to(distributor: D) -> Iterator[D]:
    """Make ``JR.enqueue`` (and ``from reactor import enqueue``) use ``distributor`` inside the
    block, so application code written against the facade can be tested; the facade's own
    distributor, if any, comes back afterwards.

    Raises:
        ReactorError: the ``reactor`` package has not been imported (no facade exists).
    """
    runtime = Runtime.facade
    if runtime is None:
        raise ReactorError("the reactor facade does not exist; import reactor first")
    previous = runtime.distributor
    runtime.distributor = distributor
    try:
        yield distributor
    finally:
        runtime.distributor = previous
