"""Shared machinery: options, results, an in-process application with a distributor, scratch
space that cleans up every process and directory it started, and small measuring helpers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reactor import Distributor
from reactor.app.runtime import new_event_loop
from reactor.config import Config
from reactor.testing.support import NodeProcess

T = TypeVar("T")

#: The repository root (the folder that holds ``benchmarks/``), put on workers' PYTHONPATH.
ROOT = Path(__file__).resolve().parent.parent
#: The reactor job files the benchmark nodes load.
JOBS_DIR = Path(__file__).resolve().parent / "jobs"
#: The environment variable naming the file the job bodies append their lines to.
OUT_ENV = "REACTOR_BENCH_OUT"


class CaseError(Exception):
    """A case could not finish (a deadline passed, a process died); the run goes on."""


@dataclass
class Options:
    """What to run and how big (see ``python -m benchmarks --help``)."""

    n: int = 100_000
    peer_n: int = 10_000
    latency_n: int = 2_000
    latency_rate: float = 200.0
    timer_n: int = 1_000
    timer_spread: float = 2.0
    memory_n: int = 100_000
    repeat: int = 3
    quick: bool = False
    only: frozenset[str] = frozenset()
    skip_peers: bool = False
    skip_redis: bool = False
    profile: Path | None = None


@dataclass
class Result:
    """One case's figures: printed as one JSON line and summarised in the table."""

    case: str
    ok: bool = True
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    profile: str = ""  # a --profile summary, printed after the table (not in the JSON line)

    def as_json(self) -> dict[str, Any]:
        """The JSON line's content."""
        out: dict[str, Any] = {"case": self.case, "ok": self.ok, **self.figures}
        if self.note:
            out["note"] = self.note
        return out


# -- measuring ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0..100) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of ``seconds`` as milliseconds, keyed ``<prefix>_p50_ms`` etc."""
    return {
        f"{prefix}_p50_ms": round(percentile(seconds, 50) * 1000, 3),
        f"{prefix}_p99_ms": round(percentile(seconds, 99) * 1000, 3),
        f"{prefix}_max_ms": round(max(seconds) * 1000, 3) if seconds else math.nan,
    }


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes."""
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used (its threads included)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class CpuMeter:
    """CPU use of several processes over an interval, as % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self._began = time.perf_counter()

    def percent(self) -> dict[str, int]:
        """``<name>_cpu_pct`` for each process since this meter was made."""
        wall = time.perf_counter() - self._began
        return {
            f"{name}_cpu_pct": round(100 * (cpu_seconds(pid) - self._start[name]) / wall)
            for name, pid in self.pids.items()
        }


def settled_rss(pid: int, *, interval: float = 0.3, tries: int = 10) -> int:
    """RSS once two samples ``interval`` apart agree within 1 % (or after ``tries``)."""
    last = rss(pid)
    for _ in range(tries):
        time.sleep(interval)
        now = rss(pid)
        if abs(now - last) <= last * 0.01:
            return now
        last = now
    return last


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, *, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until true.

    Raises:
        CaseError: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise CaseError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(interval)


def read_lines(path: Path) -> list[tuple[int, float]]:
    """The ``"<i> <epoch seconds>"`` lines a job body appended to ``path``."""
    out: list[tuple[int, float]] = []
    if not path.exists():
        return out
    with path.open("rb") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 2:
                out.append((int(parts[0]), float(parts[1])))
    return out


def count_lines(path: Path) -> int:
    """How many lines ``path`` has (0 if it does not exist yet)."""
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def exactly_once(path: Path, n: int, feedbacks: int | None = None) -> dict[str, Any]:
    """Check that jobs ``0..n-1`` each appended exactly one line to ``path``."""
    lines = read_lines(path)
    ids = [i for i, _ in lines if i >= 0]
    distinct = set(ids)
    ok = len(ids) == n and distinct == set(range(n))
    figures: dict[str, Any] = {"ran_total": len(ids), "ran_distinct": len(distinct)}
    if feedbacks is not None:
        figures["feedbacks"] = feedbacks
        ok = ok and feedbacks == n
    figures["exactly_once"] = ok
    return figures


# -- the application side -------------------------------------------------------------------------


class App:
    """An application embedding a reactor :class:`Distributor` on its own loop thread."""

    def __init__(self, config: Config | None = None) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-app", daemon=True)
        self.thread.start()
        self.distributor = Distributor("127.0.0.1", 0, config=config)
        self.call(self.distributor.start())

    @property
    def address(self) -> str:
        """``host:port`` of the distributor."""
        return self.distributor.address

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the application's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def snapshot(self) -> dict[str, Any]:
        """The distributor's live view, taken on its loop."""

        async def take() -> dict[str, Any]:
            return self.distributor.snapshot()

        return self.call(take())

    def wait_node(self, name: str, timeout: float = 30.0) -> None:
        """Wait until node ``name`` is connected and accepting jobs."""

        def connected() -> bool:
            return any(
                n["name"] == name and n["alive"] and n["accepting"]
                for n in self.snapshot()["nodes"]
            )

        wait_for(connected, timeout, f"node {name} connecting", interval=0.05)

    def close(self) -> None:
        """Stop the distributor and the loop thread."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.call(self.distributor.stop(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class Counter:
    """Counts feedback calls on the distributor's loop; :meth:`wait` blocks until a target."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.last_at = 0.0
        self.done = threading.Event()
        if target <= 0:
            self.done.set()

    def __call__(self, args: dict[str, Any]) -> None:
        self.count += 1
        if self.count >= self.target:
            self.last_at = time.perf_counter()
            self.done.set()

    def wait(self, timeout: float, what: str) -> None:
        """Block until ``target`` calls happened.

        Raises:
            CaseError: ``timeout`` passed first.
        """
        if not self.done.wait(timeout):
            raise CaseError(
                f"{what}: {self.count} of {self.target} feedbacks within {timeout:.0f}s"
            )


# -- scratch space --------------------------------------------------------------------------------


class Scratch:
    """A temp directory plus every process started in it, all removed by :meth:`close`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="reactor-bench-"))
        self._stack = contextlib.ExitStack()
        self._seq = 0

    def path(self, stem: str, suffix: str = ".txt") -> Path:
        """A fresh file name in the scratch directory."""
        self._seq += 1
        return self.dir / f"{stem}-{self._seq}{suffix}"

    def callback(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` at :meth:`close` (last registered, first run)."""
        self._stack.callback(fn)

    def node(
        self,
        name: str,
        app: App,
        *,
        storage: str = "memory",
        out: Path | None = None,
        settings: dict[str, Any] | None = None,
    ) -> NodeProcess:
        """Start a ``reactor node`` process for ``app`` and wait until it is connected
        (``settings``: more ``--set KEY=VALUE`` for it)."""
        env = {OUT_ENV: str(out)} if out is not None else {}
        proc = NodeProcess(
            name,
            [app.address],
            jobs=JOBS_DIR,
            storage=storage,
            settings={"log_job_processing": "false", **(settings or {})},
            log_path=self.path(f"node-{name}", ".log"),
            env=env,
        )
        self.callback(lambda: stop_node(proc))
        try:
            app.wait_node(name)
        except CaseError:
            if proc.proc.poll() is not None:
                raise CaseError(f"node {name} exited: {proc.output()[-2000:]}") from None
            raise
        return proc

    def worker(self, cmd: Sequence[str], env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
        """Start a peer's worker in its own session (so its children are stopped with it)."""
        log = self.path(name, ".log").open("ab")
        self.callback(log.close)
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            start_new_session=True,
        )
        self.callback(lambda: stop_group(proc))
        return proc

    def close(self) -> None:
        """Stop every process and remove the directory."""
        try:
            self._stack.close()
        finally:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_node(proc: NodeProcess) -> None:
    """Stop a node process: SIGTERM, SIGKILL after 15 s."""
    if proc.proc.poll() is None:
        proc.terminate(timeout=15)
    proc.wait(5)  # reaps it and closes its log file


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group ``proc`` leads (its own session), SIGKILL after ``grace``."""
    pgid = proc.pid  # start_new_session=True: the group id is the leader's pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # children the leader did not take down
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def app_running(config: Config | None = None) -> Iterator[App]:
    """An :class:`App` for the ``with`` block."""
    app = App(config)
    try:
        yield app
    finally:
        app.close()


def note(text: str) -> None:
    """A progress line on stderr (stdout carries the results)."""
    print(text, file=sys.stderr, flush=True)
