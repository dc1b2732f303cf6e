"""Who waits for a node to be idle (``Node.until_idle``): futures woken when it is.

A small part of its own so the node driver only says when to look: after each run of the loop
(:meth:`IdleWaiters.check`) and at close (:meth:`IdleWaiters.release`).
"""

from __future__ import annotations

import asyncio


class IdleWaiters:
    """Futures of callers waiting until nothing is ready or running on the node."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Wait until :meth:`check` sees the node idle (or it closes).

        Raises:
            TimeoutError: not idle within ``timeout`` seconds.
        """
        waiter = loop.create_future()
        self._waiters.append(waiter)
        await asyncio.wait_for(waiter, timeout)

    def check(self, idle: bool) -> None:
        """The node ran jobs: wake every waiter if it is idle now."""
        if self._waiters and idle:
            self.release()

    def release(self) -> None:
        """Wake every waiter (the node is idle, or closed)."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
