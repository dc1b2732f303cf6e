"""Throwaway redis-server processes for tests: free loopback port, AOF in a temp dir, kill/restart.

Also a throwaway 3-master Redis Cluster (:class:`RedisClusterServers`).

Only the process this helper started is ever signalled, by its PID.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis
from redis.exceptions import RedisError

__all__ = ["RedisClusterServers", "RedisServer", "redis_server", "redis_server_available"]


def redis_server_available(executable: str = "redis-server") -> bool:
    """Whether a ``redis-server`` binary is on PATH."""
    return shutil.which(executable) is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Cluster nodes listen below Linux's ephemeral range (32768-60999 by default), so no outgoing
# connection of any process can be handed one of their ports between our check and their bind.
# Client ports come from one band and bus ports (client + 10000, fixed by Redis) from another,
# so one node's bus port can never be another node's client port.
_CLUSTER_CLIENT_PORTS = range(11_000, 21_000)
_BUS_OFFSET = 10_000  # Redis's cluster bus port is the client port + 10000


def bindable(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound now (free for a server of a test's own)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """``count`` distinct client ports, each free together with its bus port (client + 10000)."""
    ports: list[int] = []
    for _ in range(200 * count):
        port = random.choice(_CLUSTER_CLIENT_PORTS)
        if port in ports or not (bindable(port) and bindable(port + _BUS_OFFSET)):
            continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free port pairs for a Redis Cluster in 11000-31000")


class RedisServer:
    """One ``redis-server`` on ``127.0.0.1``, append-only with fsync always, nothing else saved.

    Args:
        port: the port to listen on; a free one is picked when None.
        password: set ``requirepass`` (and put it in :attr:`url`).
        directory: where the AOF lives; a temporary directory (removed by :meth:`close`) if None.
        databases: how many numbered databases the server has.
        startup_timeout: how long :meth:`start` waits for the server to answer PING.
        extra_args: more ``redis-server`` arguments.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        directory: str | Path | None = None,
        databases: int = 16,
        startup_timeout: float = 10.0,
        executable: str = "redis-server",
        extra_args: Sequence[str] = (),
    ) -> None:
        self._fixed_port = port is not None
        self.port = port if port is not None else _free_port()
        self.password = password
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="reactor-redis-"))
        self.databases = databases
        self.startup_timeout = startup_timeout
        self.executable = executable
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:<port>/0``."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """The URL of database ``db`` on this server."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process this helper started is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def client(self, db: int = 0) -> redis.Redis:
        """A new synchronous client for database ``db`` (close it when done)."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, db=db, password=self.password, socket_timeout=5.0
        )

    def _command(self) -> list[str]:
        args = [
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--dir", str(self.directory), "--databases", str(self.databases),
            "--logfile", str(self.directory / "redis.log"), "--daemonize", "no",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        return [*args, *self.extra_args]

    def start(self) -> RedisServer:
        """Start the server and wait until it answers (with its AOF loaded).

        Raises:
            RuntimeError: it exited or did not answer within ``startup_timeout``.
        """
        if self.running:
            return self
        for attempt in range(5):
            self._proc = subprocess.Popen(
                self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                self._wait_ready()
                return self
            except RuntimeError:
                self.kill()
                in_use = "Address already in use" in self.log_tail()
                if not in_use or self._fixed_port or attempt == 4:
                    raise
                self.port = _free_port()  # another process took the port: pick another
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"redis-server exited at start:\n{self.log_tail()}")
            with self.client() as client:
                try:
                    client.ping()
                    if not int(client.info("persistence").get("loading", 0)):
                        return
                except (RedisError, OSError) as exc:
                    last = exc
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in time ({last!r})")

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log file."""
        path = self.directory / "redis.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server at once, as a crash would."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self) -> RedisServer:
        """Start again on the same port and directory; the AOF brings the data back."""
        self.stop()
        self._proc = None
        return self.start()

    def close(self) -> None:
        """Stop the server and remove the temporary directory it created."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisServer 127.0.0.1:{self.port} pid={self.pid}>"


class RedisClusterServers:
    """A throwaway Redis Cluster: ``masters`` cluster-enabled servers joined by ``redis-cli``.

    Args:
        masters: how many primaries (no replicas); Redis needs at least 3.
        startup_timeout: how long :meth:`start` waits for ``cluster_state:ok`` everywhere.
    """

    def __init__(self, *, masters: int = 3, startup_timeout: float = 20.0) -> None:
        cluster_args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000")  # fmt: skip
        self.servers = [
            RedisServer(port=port, extra_args=cluster_args) for port in _cluster_ports(masters)
        ]
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<port of the first server>``."""
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def start(self) -> RedisClusterServers:
        """Start the servers, create the cluster, and wait until every node reports it ok.

        Raises:
            RuntimeError: ``redis-cli --cluster create`` failed or the cluster never got ok.
        """
        for server in self.servers:
            self._start_node(server)
        nodes = [f"127.0.0.1:{server.port}" for server in self.servers]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}"
            )
        deadline = time.monotonic() + self.startup_timeout
        while not all(self._ok(server) for server in self.servers):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok in time")
            time.sleep(0.05)
        return self

    def _start_node(self, server: RedisServer, tries: int = 5) -> None:
        """Start one node; when its port (or bus port) was taken after all, move to new ones."""
        for attempt in range(tries):
            try:
                server.start()
                return
            except RuntimeError:
                if "Address already in use" not in server.log_tail() or attempt == tries - 1:
                    raise
                taken = {other.port for other in self.servers}
                server.port = next(p for p in _cluster_ports(len(taken) + 1) if p not in taken)

    @staticmethod
    def _ok(server: RedisServer) -> bool:
        with server.client() as client:
            try:
                info = client.execute_command("CLUSTER", "INFO")
            except (RedisError, OSError):
                return False
        if isinstance(info, dict):
            return str(info.get("cluster_state")) == "ok"
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def flush(self) -> None:
        """Delete every key on every primary."""
        for server in self.servers:
            with server.client() as client:
                client.flushall()

    def close(self) -> None:
        """Stop every server and remove their directories."""
        for server in self.servers:
            server.close()

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def redis_server(*, password: str | None = None, databases: int = 16) -> Iterator[RedisServer]:
    """A :class:`RedisServer` running for the ``with`` block, then stopped and cleaned up."""
    with RedisServer(password=password, databases=databases) as server:
        yield server
