"""The framework examples under real servers: a web server (gunicorn, uvicorn) serving an example
from ``examples/``, ``reactor node`` processes (the console script) started with ``--discover``,
a real redis-server for discovery, and a thread pool of HTTP clients.

Every request asks for one job: ``GET /greet?name=g<i>`` waits for the job's result, and every
tenth request is ``POST /later?name=l<i>``, which returns at once (fire and forget). Each node's
job appends the name it ran to a ledger file, so the test sees that every job ran at least once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from reactor.testing import free_port, wait_until
from tests.redis.conftest import redis_server, redis_url

__all__ = ["redis_server", "redis_url"]

ROOT = Path(__file__).parent.parent.parent
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
REQUESTS = 1000


class Processes:
    """The server and node processes of one test, logging to files; all stopped at teardown."""

    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.ledger = tmp_path / "ledger.txt"
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` with the example's environment; its output goes to ``<name>.log``."""
        full_env = {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "REDIS_URL": self.redis_url,
            "EXAMPLE_JOB_LOG": str(self.ledger),
            "REACTOR_DRAIN_TIMEOUT": "10",  # the default: the exit drain is under test
            "REACTOR_LOG_JOB_PROCESSING": "false",
            **(env or {}),
        }
        with open(self.tmp_path / f"{name}.log", "ab") as log:
            # A session of its own: teardown kills the server's workers too, by process group.
            proc = subprocess.Popen(
                cmd, cwd=cwd, env=full_env, stdout=log, stderr=log, start_new_session=True
            )
        self.started.append((name, proc))
        return proc

    def nodes(self, cwd: Path, count: int = 2) -> None:
        """``count`` nodes dialing every distributor announced in Redis."""
        for i in range(count):
            self.start(
                f"node{i}",
                [str(BIN / "reactor"), "node", "--name", f"n{i}", "--discover", self.redis_url],
                cwd,
            )

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-4000:]}" for name, _ in self.started)

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
        """SIGTERM, and wait (SIGKILL past ``timeout``)."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"did not exit within {timeout}s of SIGTERM") from None

    def close(self) -> None:
        for _, proc in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
            proc.wait(10)


@pytest.fixture
def processes(tmp_path: Path, redis_url: str) -> Iterator[Processes]:
    procs = Processes(tmp_path, redis_url)
    yield procs
    procs.close()


def wait_serving(base: str, server: subprocess.Popen[bytes], procs: Processes) -> None:
    """Wait until the server answers HTTP (failing fast if it exited)."""

    def up() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"the server exited with {server.returncode}:\n{procs.logs()}")
        try:
            httpx.get(f"{base}/", timeout=1.0)  # any answer, even a 404, means it serves
        except httpx.TransportError:
            return False
        return True

    wait_until(up, 30, interval=0.05, message=f"the server did not answer:\n{procs.logs()}")


def send_requests(
    base: str, count: int = REQUESTS, threads: int = 16, prefix: str = ""
) -> list[dict[str, Any]]:
    """``count`` requests from ``threads`` client threads; returns each answer's JSON with its
    request's name (``prefix`` keeps the names of several rounds apart). Every ``/greet`` must
    come back with its job's result."""

    def one(client: httpx.Client, i: int) -> dict[str, Any]:
        later = i % 10 == 9
        name = f"{prefix}l{i}" if later else f"{prefix}g{i}"
        if later:
            answer = client.post(f"{base}/later", params={"name": name})
        else:
            answer = client.get(f"{base}/greet", params={"name": name})
        assert answer.status_code == 200, f"{name}: {answer.status_code} {answer.text[:500]}"
        body: dict[str, Any] = answer.json()
        if not later:
            assert body["greeting"] == f"Hello, {name}!", body
        return {"name": name, **body}

    # A connection per request: a recycled worker closes its idle keep-alive connections, and a
    # request sent on one as it closes fails in any client (browsers retry; httpx does not).
    # And a client per thread: one pool shared by 16 threads that each close their connection
    # after every response sometimes read a socket another thread had just closed (EBADF).
    limits = httpx.Limits(max_keepalive_connections=0)
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        mine: httpx.Client | None = getattr(local, "client", None)
        if mine is None:
            mine = local.client = httpx.Client(timeout=60.0, limits=limits)
            with lock:
                clients.append(mine)
        return mine

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda i: one(client(), i), range(count)))
    finally:
        for each in clients:
            each.close()


def ledger(procs: Processes) -> list[str]:
    return procs.ledger.read_text().split() if procs.ledger.exists() else []


def wait_every_job_ran(procs: Processes, answers: list[dict[str, Any]]) -> None:
    """Every request's job (the awaited and the fire-and-forget ones) ran at least once."""
    wanted = {a["name"] for a in answers}

    def missing() -> set[str]:
        return wanted - set(ledger(procs))

    wait_until(
        lambda: not missing(),
        30,
        interval=0.05,
        message=f"jobs never ran: {sorted(missing())[:20]}...\n{procs.logs()}",
    )


def report(label: str, answers: list[dict[str, Any]], procs: Processes, began: float) -> None:
    runs = ledger(procs)
    print(
        f"\n{label}: {len(answers)} requests in {time.monotonic() - began:.1f}s, "
        f"{len({a['worker'] for a in answers})} worker processes served them, "
        f"{len(runs)} job runs for {len(set(runs))} jobs, "
        f"lost {len({a['name'] for a in answers} - set(runs))}"
    )


def load_then_stop(
    procs: Processes, label: str, app: Path, server_cmd: Callable[[int], list[str]]
) -> list[dict[str, Any]]:
    """The whole run: two nodes with --discover, the server (``server_cmd(port)``) from ``app``,
    REQUESTS requests whose jobs all run, then 40 more right before a graceful stop (SIGTERM),
    whose jobs all run too (each worker drains at exit). Returns the first round's answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs.nodes(app)
    server = procs.start("server", server_cmd(port), app)
    wait_serving(base, server, procs)

    began = time.monotonic()
    answers = send_requests(base)
    wait_every_job_ran(procs, answers)
    report(label, answers, procs, began)

    tail = send_requests(base, count=40, prefix="tail")
    assert procs.stop(server) == 0, procs.logs()
    wait_every_job_ran(procs, tail)
    assert "they are lost" not in procs.log("server")
    return answers
