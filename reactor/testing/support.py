"""Helpers for reactor's own tests, benchmarks and examples: free ports, deadline waits, node
subprocesses. Application authors want :mod:`reactor.testing` instead."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> None:
    """Block until ``predicate()`` is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> None:
    """:func:`wait_until` for coroutines: yields to the loop between checks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class NodeProcess:
    """A ``reactor node`` subprocess, stopped by PID."""

    def __init__(
        self,
        name: str,
        distributors: Sequence[str],
        *,
        jobs: str | Path,
        storage: str = "memory",
        capacity: int | None = None,
        settings: dict[str, Any] | None = None,
        extra: Sequence[str] = (),
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        cmd = [
            sys.executable,
            "-m",
            "reactor",
            "--log-level",
            "INFO",
            "node",
            "--name",
            name,
            "--jobs",
            str(jobs),
            "--storage",
            storage,
        ]
        for d in distributors:
            cmd += ["--distributor", d]
        if capacity is not None:
            cmd += ["--capacity", str(capacity)]
        for key, value in (settings or {}).items():
            cmd += ["--set", f"{key}={value}"]
        cmd += list(extra)
        self.name = name
        self.cmd = cmd
        self.log_path = Path(log_path) if log_path else None
        # The node's log file, or None for DEVNULL; closed once the process is gone.
        self._log: IO[bytes] | None = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        out = subprocess.DEVNULL if self._log is None else self._log
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=out, env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the node (if it still runs)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for exit (SIGKILL after ``timeout``); returns the exit code."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        code = self.proc.wait(30)
        self._close_log()
        return code

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit."""
        code = self.proc.wait(timeout)
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()

    def output(self) -> str:
        """What the node logged so far (when started with ``log_path``)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._close_log()
