"""The nemesis's cluster: a redis-server, application and node processes, a proxy per application.

Every process is started here and signalled only by its PID. Each node dials every application
through that application's :class:`~tests.faults.proxy.TcpProxy` (so a cut breaks real
connections), and applications restart on their own port. A process the schedule did not take
down but that exited (a node refused at start because its old session still looked alive, an
application that could not bind yet) is restarted by :meth:`Cluster.supervise`, as a service
manager would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from reactor.testing.redis_server import RedisServer
from tests.faults.proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
JOBS = Path(__file__).resolve().parent / "jobs"

#: Liveness fast enough for a run of minutes; the same on both sides.
SETTINGS: dict[str, object] = {
    "heartbeat_interval": 0.2,
    "heartbeat_timeout": 2.0,
    "node_lost_after": 6.0,
    "log_job_processing": False,
    "drain_timeout": 5.0,
}
NODE_SETTINGS: dict[str, object] = {
    **SETTINGS,
    "retry_multiplier": 0.3,
    "shutdown_grace": 5.0,
    "merge_job_itself_to_args": True,
}
#: A supervised process that exited is started again no sooner than this.
RESTART_PAUSE = 0.5
#: A process still running this long after SIGTERM is killed (drain_timeout + shutdown_grace).
TERM_LIMIT = 15.0
#: Applications listen below Linux's ephemeral range (32768-60999), so no outgoing connection
#: (and no proxy, which binds port 0) can take an application's port while it restarts.
APP_PORTS = range(21_000, 31_000)


def app_ports(count: int) -> list[int]:
    """``count`` distinct free ports outside the ephemeral range."""
    pick = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < count:
        port = pick.choice(APP_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class Proc:
    """One supervised process: an application or a node, started again and again."""

    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    wanted: bool = True  # the supervisor keeps it running
    frozen: bool = False
    starts: int = 0
    exited_at: float | None = None
    termed_at: float | None = None  # when it was sent SIGTERM, while it has not exited
    _log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        self.wanted, self.frozen, self.exited_at = True, False, None
        if self.running:  # terminated but not gone yet: the supervisor starts it once it is
            return
        self.close_log()
        self.termed_at = None
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process is gone
        self.popen = subprocess.Popen(
            self.command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **self.env},
        )
        self.starts += 1

    def signal(self, sig: int) -> None:
        if self.running and self.popen is not None:
            os.kill(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap (a frozen process dies too)."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(30)
        self.frozen = False
        self.close_log()

    def close_log(self) -> None:
        if self._log is not None and not self._log.closed:
            self._log.close()


class Cluster:
    """Redis, ``apps`` applications and ``nodes`` nodes (every other one with Redis storage).

    Args:
        directory: the run's temporary directory (ledgers, logs, Redis's AOF).
        apps: how many applications; nodes: how many nodes.
        seed: passed to the applications for their workload.
        rate: jobs per second per application.
    """

    def __init__(
        self, directory: Path, *, apps: int, nodes: int, seed: int, rate: float, lifetime: float
    ) -> None:
        self.dir = directory
        self.redis = RedisServer(directory=directory / "redis")
        (directory / "redis").mkdir()
        self.app_names = [f"a{i}" for i in range(apps)]
        self.node_names = [f"n{i}" for i in range(nodes)]
        self.memory_nodes = {n for i, n in enumerate(self.node_names) if i % 2 == 0}
        self.seed = seed
        self.rate = rate
        self.lifetime = lifetime
        self.ports = dict(zip(self.app_names, app_ports(apps), strict=True))
        self.proxies: dict[str, TcpProxy] = {}
        self.procs: dict[str, Proc] = {}
        self.supervisor_restarts = 0

    # -- building ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.redis.start()
        for name in self.app_names:
            self.proxies[name] = TcpProxy("127.0.0.1", self.ports[name], lifetime=self.lifetime)
        for name in self.app_names:
            self.procs[name] = Proc(name, self._app_command(name), self.dir / f"{name}.log")
        for name in self.node_names:
            env = {"NEMESIS_RUNS": str(self.dir / f"runs-{name}.ledger")}
            self.procs[name] = Proc(name, self._node_command(name), self.dir / f"{name}.log", env)
        for proc in self.procs.values():
            proc.start()

    def _app_command(self, name: str) -> list[str]:
        return [
            sys.executable, "-m", "tests.nemesis.app", "--name", name,
            "--port", str(self.ports[name]), "--redis", self.redis.url, "--dir", str(self.dir),
            "--nodes", ",".join(self.node_names), "--rate", str(self.rate),
            "--seed", str(self.seed), "--settings", json.dumps(SETTINGS),
        ]  # fmt: skip

    def _node_command(self, name: str) -> list[str]:
        storage = "memory" if name in self.memory_nodes else self.redis.url
        cmd = [sys.executable, "-m", "reactor", "--log-level", "INFO", "node", "--name", name]
        cmd += ["--jobs", str(JOBS), "--storage", storage]
        for proxy in self.proxies.values():
            cmd += ["--distributor", proxy.address]
        settings = {**NODE_SETTINGS, "result_store": self.redis.url}
        for key, value in settings.items():
            cmd += ["--set", f"{key}={value}"]
        return cmd

    # -- faults -----------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.wanted = False
        proc.kill()

    def terminate(self, name: str) -> None:
        """SIGTERM (after SIGCONT); it exits by itself, and is SIGKILLed at its restart if not."""
        proc = self.procs[name]
        proc.wanted = False
        proc.frozen = False
        proc.signal(signal.SIGCONT)
        proc.signal(signal.SIGTERM)
        proc.termed_at = time.monotonic()

    def freeze(self, name: str) -> None:
        self.procs[name].frozen = True
        self.procs[name].signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.procs[name].signal(signal.SIGCONT)
        self.procs[name].frozen = False

    def restart(self, name: str) -> str:
        """Start ``name`` again (once a terminated one has exited: it may still be draining)."""
        proc = self.procs[name]
        note = " (still stopping: started once it exits)" if proc.running else ""
        proc.start()
        return note

    def redis_down(self, how: str) -> None:
        if how == "kill":
            self.redis.kill()
        else:
            self.redis.stop()

    def redis_up(self) -> None:
        self.redis.start()

    # -- supervision ------------------------------------------------------------------------------

    def supervise(self) -> list[str]:
        """Start again every wanted process that exited; what it did, for the log."""
        done = []
        now = time.monotonic()
        for proc in self.procs.values():
            if proc.termed_at is not None and now - proc.termed_at > TERM_LIMIT and proc.running:
                proc.kill()
                done.append(
                    f"supervisor: {proc.name} still running {TERM_LIMIT}s after SIGTERM: killed"
                )
            if not proc.wanted or proc.running or proc.popen is None:
                continue
            if proc.exited_at is None:
                proc.exited_at = now
                continue
            if now - proc.exited_at >= RESTART_PAUSE:
                code = proc.popen.returncode
                proc.start()
                self.supervisor_restarts += 1
                done.append(f"supervisor: {proc.name} had exited ({code}): started again")
        return done

    def heal(self) -> list[str]:
        """Everything up: Redis, every proxy flowing, every process running and thawed."""
        done = []
        if not self.redis.running:
            self.redis.start()
            done.append("heal: redis started")
        for name, proxy in self.proxies.items():
            proxy.heal()
            done.append(f"heal: proxy of {name} flowing")
        for proc in self.procs.values():
            if proc.frozen:
                self.thaw(proc.name)
                done.append(f"heal: {proc.name} thawed")
            if not proc.wanted:
                done.append(f"heal: {proc.name} restarted{self.restart(proc.name)}")
        return done

    def stop_enqueueing(self) -> None:
        (self.dir / "stop-enqueueing").touch()

    # -- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process started here (by PID), close the proxies, stop Redis."""
        for proc in self.procs.values():
            proc.kill()
        for proxy in self.proxies.values():
            proxy.close()
        self.redis.stop()

    def tail(self, names: Sequence[str], lines: int = 15) -> str:
        """The last lines of some processes' logs (for a report of violations)."""
        out = []
        for name in names:
            path = self.dir / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name}.log\n" + "\n".join(text))
        return "\n".join(out)
