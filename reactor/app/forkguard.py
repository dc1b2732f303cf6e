"""Fork safety for the facade: notices that this process is a fork of the one that started the
reactor thread (gunicorn ``--preload``, ``multiprocessing`` with fork), where that thread is gone.

``os.fork`` copies only the calling thread: in the child the reactor loop, its thread and the
ZeroMQ sockets of the parent are dead copies. The guard tells its owner at once (in the child,
before any other Python code runs) so the owner can drop them and start afresh on first use.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


class ForkGuard:
    """Calls ``on_fork`` in a forked child, and remembers which process owns the reactor.

    Args:
        on_fork: called in the child right after ``fork`` (keep it small: only that thread
            exists, and locks held by other threads at the fork stay held forever).
    """

    def __init__(self, on_fork: Callable[[], None]) -> None:
        self.pid = os.getpid()
        self._on_fork: Callable[[], Callable[[], None] | None]
        if hasattr(on_fork, "__self__"):  # a bound method: do not keep its owner alive
            self._on_fork = weakref.WeakMethod(on_fork)
        else:
            self._on_fork = lambda: on_fork
        os.register_at_fork(after_in_child=self._after_in_child)

    @property
    def forked(self) -> bool:
        """Whether this process is a fork of the one that made the guard (and not yet adopted)."""
        return os.getpid() != self.pid

    def adopt(self) -> None:
        """This process owns the reactor from now on (after a restart in the child)."""
        self.pid = os.getpid()

    def _after_in_child(self) -> None:
        callback = self._on_fork()
        if callback is not None:
            callback()
