"""The peers' job body, the same as reactor's benchmark job: append ``"<i> <start time>"`` to the
file named by ``REACTOR_BENCH_OUT`` with one ``write`` to an O_APPEND descriptor (safe across
threads and forked processes)."""

from __future__ import annotations

import os
import time

_fd: int | None = None


def append_line(i: int) -> None:
    """Record that job ``i`` started now."""
    global _fd
    started = time.time()
    if _fd is None:
        path = os.environ.get("REACTOR_BENCH_OUT")
        if not path:
            return
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, b"%d %.6f\n" % (i, started))
