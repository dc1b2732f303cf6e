"""``reactor node --processes N``: a tiny supervisor that runs N ordinary node processes named
``NAME-1`` .. ``NAME-N``, restarts one that dies (with backoff), stops on a crash loop, and
forwards SIGTERM/SIGINT so every child stops gracefully. It does no job work itself.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from reactor.cli import exits
from reactor.cli.options import env_help, env_int, from_env
from reactor.errors import ConfigError

log = logging.getLogger("reactor.cli")

#: The exit code with which ``reactor node`` refuses its configuration (a bad job file, a bad
#: setting): restarting the child cannot help, so the supervisor stops.
CONFIG_ERROR_EXIT: Final = exits.USAGE
#: The first restart waits this long; each further death in a row doubles it, up to the cap.
FIRST_DELAY: Final = 0.5
MAX_DELAY: Final = 30.0
#: A child that lived this long was healthy: its next restart waits FIRST_DELAY again.
HEALTHY_AFTER: Final = 60.0
#: A child dying this many times within CRASH_WINDOW seconds is a crash loop: stop everything.
CRASH_DEATHS: Final = 5
CRASH_WINDOW: Final = 60.0
#: Wake at least this often even when no signal or output arrives (a safety net, not a poll).
IDLE_WAKE: Final = 5.0
_FORWARDED: Final = (signal.SIGTERM, signal.SIGINT)
#: Exit codes of a child that stopped as asked: 0, or killed by the forwarded signal itself
#: because it came before the child installed its handlers (so it held no job yet).
STOPPED: Final = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


def add_processes_argument(p: argparse.ArgumentParser) -> None:
    """Add ``--processes N`` to the ``node`` parser."""
    p.add_argument(
        "--processes",
        default=from_env("--processes"),
        metavar="N",
        help=env_help(
            "--processes",
            "run N node processes named NAME-1 .. NAME-N under a supervisor that restarts them "
            "('auto' = one per core; default 1: this process is the node); with --metrics-port "
            "P, child i serves its metrics on port P+i-1 (0: each a free port)",
        ),
    )


def process_count(text: str | None) -> int:
    """The number of node processes ``--processes`` asks for (1 when not given).

    Raises:
        ConfigError: not a whole number >= 1 or ``auto``.
    """
    if text is None:
        return exits.FAILURE
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigError(f"--processes must be a whole number >= 1 or 'auto', not {text!r}")
    return count


def maybe_supervise(ns: argparse.Namespace) -> int | None:
    """Run the supervisor when ``--processes`` asks for more than one node, and return its exit
    code; None when this process should be the node itself."""
    try:
        count = process_count(ns.processes)
        base_port = ns.metrics_port if ns.metrics_port is not None else env_int("--metrics-port")
    except ConfigError as exc:
        print(f"reactor node: {exc}", file=sys.stderr)
        return exits.USAGE
    if count == 1:
        return None
    argv = getattr(ns, "argv", None)
    supervisor = Supervisor(
        ns.name,
        count,
        argv=list(sys.argv[1:] if argv is None else argv),
        metrics_port=base_port,
    )
    return supervisor.run()


def child_command(argv: Sequence[str], name: str, metrics_port: int | None) -> list[str]:
    """The command of one child: the supervisor's own arguments, then overrides (argparse keeps
    the last value of an option, so abbreviations and ``--opt=value`` forms need no filtering)."""
    cmd = [sys.executable, "-m", "reactor", *argv, "--name", name, "--processes", "1"]
    if metrics_port is not None:
        cmd += ["--metrics-port", str(metrics_port)]
    return cmd


def child_port(base: int | None, i: int) -> int | None:
    """Child ``i``'s metrics port: ``base + i - 1`` (0 stays 0: each child takes a free port)."""
    return None if base is None else base and base + i - 1


@dataclass
class Child:
    """One slot of the supervisor: a name, its current process, and its restart history.

    The restart rule lives here and reads only the times it is given, so a test can drive it
    with a fake clock.
    """

    name: str
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = FIRST_DELAY
    due: float | None = None  # when to start it again, after a death
    deaths: collections.deque[float] = field(default_factory=collections.deque)
    tail: bytes = b""  # the end of its stderr, for the error that names a failure's cause
    pending: bytes = b""  # a partial stderr line, forwarded once it is complete

    def started(self, now: float) -> None:
        """A new process of this slot started at ``now``."""
        self.started_at = now
        self.due = None
        self.tail = b""

    def died(self, now: float, code: int) -> str | None:
        """Record a death at ``now`` with exit ``code``; schedule the restart.

        Returns:
            None to restart at ``self.due``, or why the supervisor must stop instead.
        """
        if code == CONFIG_ERROR_EXIT:
            return f"{self.name} {describe_exit(code)} (a configuration error){self.cause()}"
        if now - self.started_at >= HEALTHY_AFTER:
            self.delay = FIRST_DELAY
        self.deaths.append(now)
        while self.deaths and self.deaths[0] <= now - CRASH_WINDOW:
            self.deaths.popleft()
        if len(self.deaths) >= CRASH_DEATHS:
            return (
                f"{self.name} died {len(self.deaths)} times within {CRASH_WINDOW:g} s, last "
                f"{describe_exit(code)}{self.cause()}"
            )
        self.due = now + self.delay
        self.delay = min(self.delay * 2, MAX_DELAY)
        return None

    def cause(self) -> str:
        """``": <the child's last error line>"``, or "" when it said nothing."""
        lines = [ln.strip() for ln in self.tail.decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        ours = [ln for ln in lines if ln.startswith("reactor node: ")]
        if ours:
            return ": " + ours[-1].removeprefix("reactor node: ")
        return f": {lines[-1]}" if lines else ""

    def heard(self, data: bytes) -> bytes:
        """Take a chunk of the child's stderr; return the complete lines to forward."""
        self.tail = (self.tail + data)[-4096:]
        text = self.pending + data
        cut = text.rfind(b"\n") + 1
        self.pending = text[cut:]
        return text[:cut]


def describe_exit(code: int) -> str:
    """``exited with code 1`` or ``was killed by SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn``: the child gets its own process group (so a terminal's Ctrl-C reaches
    only the supervisor, which forwards one SIGINT) and, on Linux, SIGTERM when the supervisor
    dies (so a SIGKILLed supervisor leaves no orphans; they stop gracefully)."""
    parent = os.getpid()
    prctl: Any = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the supervisor died before prctl took effect
                os._exit(exits.FAILURE)

    return setup


class Supervisor:
    """Runs ``count`` node processes and keeps them running until a signal or a crash loop.

    A plain loop over a selector: the children's stderr pipes and a self-pipe the signal
    handlers write to (``signal.set_wakeup_fd``), so it sleeps until something happens.
    """

    _selector: selectors.BaseSelector  # made in run(), closed when it returns

    def __init__(
        self, name: str, count: int, *, argv: Sequence[str], metrics_port: int | None
    ) -> None:
        self.argv = list(argv)
        self.children = [
            Child(f"{name}-{i}", child_port(metrics_port, i)) for i in range(1, count + 1)
        ]
        self.signals = 0
        self.failure: str | None = None
        self._setup = _die_with_parent()

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        """Start every child and supervise them; returns the exit code (0 after a signal once
        every child stopped gracefully, 1 after a crash loop or a forced stop)."""
        self._selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        previous = {sig: signal.signal(sig, _ignore) for sig in (*_FORWARDED, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            now = time.monotonic()
            for child in self.children:
                self._start(child, now)
            while any(c.proc is not None for c in self.children) or not self._stopping:
                self._wait(wake_r)
            return self._result()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for child in self.children:
                self._close(child)
            self._selector.close()
            os.close(wake_r)
            os.close(wake_w)

    @property
    def _stopping(self) -> bool:
        return self.signals > 0 or self.failure is not None

    def _wait(self, wake_r: int) -> None:
        """Sleep until a signal, output, or a restart is due; then act on all of them."""
        for key, _ in self._selector.select(self._timeout(time.monotonic())):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    for signum in os.read(wake_r, 512):
                        self._on_signal(signum)
            else:
                self._forward_output(key.data)
        now = time.monotonic()
        for child in self.children:
            self._reap(child, now)
            if child.due is not None and child.due <= now and not self._stopping:
                self._start(child, now)

    def _timeout(self, now: float) -> float:
        due = [c.due for c in self.children if c.due is not None and not self._stopping]
        return max(0.0, min([*due, now + IDLE_WAKE]) - now)

    def _result(self) -> int:
        if self.failure is not None:
            print(f"reactor node: stopped: {self.failure}", file=sys.stderr)
            return exits.FAILURE
        if self.signals > 1:
            print("reactor node: stopped: second signal; node processes killed", file=sys.stderr)
            return exits.FAILURE
        log.info("supervisor: every node process stopped")
        return exits.OK

    # -- signals and children -------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if signum not in _FORWARDED:
            return  # SIGCHLD: only wakes the loop, which reaps
        self.signals += 1
        running = [c for c in self.children if c.proc is not None]
        if self.signals == 1 and self.failure is not None:  # they already got a SIGTERM
            log.info(
                "supervisor: %s received; already stopping the node processes (signal again to "
                "kill them)",
                signal.Signals(signum).name,
            )
        elif self.signals == 1:
            log.info(
                "supervisor: %s received; stopping %d node processes gracefully (signal again "
                "to kill them)",
                signal.Signals(signum).name,
                len(running),
            )
            self._signal_all(signum)
        elif self.signals == 2:
            log.warning("supervisor: second signal; killing the node processes")
            self._signal_all(signal.SIGKILL)

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            child.due = None
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signum)

    def _start(self, child: Child, now: float) -> None:
        cmd = child_command(self.argv, child.name, child.metrics_port)
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, preexec_fn=self._setup)
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)
        self._selector.register(proc.stderr, selectors.EVENT_READ, child)
        child.proc = proc
        child.started(now)
        log.info("supervisor: started %s (pid %d)", child.name, proc.pid)

    def _reap(self, child: Child, now: float) -> None:
        proc = child.proc
        if proc is None or proc.poll() is None:
            return
        self._drain(child)
        self._close(child)
        child.proc = None
        code = proc.returncode
        if self._stopping:
            if code not in STOPPED and self.signals == 1 and self.failure is None:
                self.failure = f"{child.name} {describe_exit(code)} while stopping{child.cause()}"
            return
        why = child.died(now, code)
        if why is None:
            log.warning(
                "supervisor: %s (pid %d) %s; restarting it in %.1f s",
                child.name,
                proc.pid,
                describe_exit(code),
                child.due - now if child.due is not None else 0.0,
            )
            return
        log.error("supervisor: %s failed; stopping the other node processes", child.name)
        self.failure = why
        self._signal_all(signal.SIGTERM)

    # -- output ---------------------------------------------------------------------------------

    def _forward_output(self, child: Child) -> None:
        """Copy what a child wrote to stderr to ours, whole lines at a time."""
        stream = child.proc.stderr if child.proc is not None else None
        if stream is None:
            return
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:  # EOF: the child is gone (or closed stderr); keep the rest for _reap
            self._close(child)
            return
        _write(child.heard(data))

    def _drain(self, child: Child) -> None:
        """Forward whatever the child wrote before it exited, and its last partial line."""
        stream = child.proc.stderr if child.proc is not None else None
        if stream is not None and not stream.closed:
            with contextlib.suppress(BlockingIOError, OSError):
                while data := os.read(stream.fileno(), 65536):
                    _write(child.heard(data))
        if child.pending:
            _write(child.heard(b"\n"))

    def _close(self, child: Child) -> None:
        stream: IO[bytes] | None = child.proc.stderr if child.proc is not None else None
        if stream is not None and not stream.closed:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(stream)
            stream.close()


def _write(data: bytes) -> None:
    if data:
        with contextlib.suppress(OSError):
            sys.stderr.buffer.write(data)
            sys.stderr.buffer.flush()


def _ignore(signum: int, frame: Any) -> None:
    """A signal handler that does nothing: the wakeup fd carries the signal to the loop."""
