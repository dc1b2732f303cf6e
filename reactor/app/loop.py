"""The reactor thread's event loop (uvloop when installed), and the signals it leaves to the
application's main thread."""

from __future__ import annotations

import asyncio
import signal

#: Signals an application (or its server: gunicorn, uvicorn) handles on its main thread.
APPLICATION_SIGNALS = {
    getattr(signal, name)
    for name in (
        *("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"),
        *("SIGCHLD", "SIGALRM", "SIGTTIN", "SIGTTOU"),
    )
    if hasattr(signal, name)
}


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
