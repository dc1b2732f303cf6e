"""Fixtures and checks for the real-process fault tests of issue 9.

Every test here asserts the contract of DESIGN §3: every handle resolves with success within a
deadline (zero loss), every job ran at least once (its evidence file says so), and no handle got an
outcome nobody caused (no ``JobCancelledError``, no ``JobFailed`` for a job that did not fail).
Problems are collected and reported together with their numbers, so a failing run says how many jobs
were lost, cancelled by a phantom, or never ran.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reactor import Config, Distributor
from reactor.distributor.handle import JobHandle
from reactor.errors import JobCancelledError, JobFailed
from reactor.testing.support import async_wait_until
from tests.conftest import FAST, JOBS
from tests.faults.netns import NetLab, require_netns
from tests.faults.proxy import TcpProxy
from tests.redis.conftest import redis_server, redis_url  # noqa: F401 - fixtures for tests here

# -- configuration --------------------------------------------------------------------------------


def fault_config(**extra: Any) -> Config:
    """The fast test settings (``FAST``) plus ``extra``."""
    return Config(**{**FAST, **extra})


def node_command(
    name: str,
    distributors: Sequence[str],
    *,
    storage: str = "memory",
    settings: dict[str, Any] | None = None,
    jobs: Path = JOBS,
) -> list[str]:
    """The ``reactor node`` command line :class:`reactor.testing.support.NodeProcess` would run."""
    cmd = [sys.executable, "-m", "reactor", "--log-level", "INFO", "node", "--name", name]
    cmd += ["--jobs", str(jobs), "--storage", storage]
    for d in distributors:
        cmd += ["--distributor", d]
    for key, value in {**FAST, **(settings or {})}.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


# -- outcomes -------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the handles of one scenario came to."""

    succeeded: list[JobHandle] = field(default_factory=list)
    cancelled: list[JobHandle] = field(default_factory=list)  # phantom: no test cancels a job
    failed: list[JobHandle] = field(default_factory=list)  # no job in these tests fails
    errored: list[tuple[JobHandle, BaseException]] = field(default_factory=list)
    pending: list[JobHandle] = field(default_factory=list)  # never resolved: lost
    failures: list[str] = field(default_factory=list)  # what the phantom JobFailed said
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        if self.pending:
            out.append(f"{len(self.pending)} handles never resolved (lost)")
        if self.cancelled:
            out.append(f"{len(self.cancelled)} phantom JobCancelledError")
        if self.failed:
            out.append(f"{len(self.failed)} phantom JobFailed ({self.failures[:2]})")
        if self.errored:
            kinds = Counter(f"{type(e).__name__}: {e}"[:120] for _, e in self.errored)
            out.append(f"{len(self.errored)} other errors {dict(kinds)}")
        return out

    def summary(self) -> str:
        return (
            f"succeeded={len(self.succeeded)} lost={len(self.pending)} "
            f"phantom_cancels={len(self.cancelled)} phantom_failures={len(self.failed)} "
            f"other_errors={len(self.errored)}"
        )


def tally(handles: Iterable[JobHandle]) -> Tally:
    """Sort ``handles`` by outcome (without waiting)."""
    t = Tally()
    for h in handles:
        if not h.done():
            t.pending.append(h)
            continue
        try:
            t.results[h.id] = h.result(0)
            t.succeeded.append(h)
        except JobCancelledError:
            t.cancelled.append(h)
        except JobFailed as exc:
            t.failed.append(h)
            t.failures.append(f"{type(exc).__name__}: {exc}"[:160])
        except Exception as exc:
            t.errored.append((h, exc))
    return t


async def settle(handles: Sequence[JobHandle], timeout: float) -> Tally:
    """Wait until every handle is done or ``timeout`` passes, then :func:`tally` them."""
    with contextlib.suppress(AssertionError):
        await async_wait_until(lambda: all(h.done() for h in handles), timeout, interval=0.05)
    return tally(handles)


def runs(path: Path) -> Counter[str]:
    """How many times each tag's job ran to its end, from a ``sleep_def`` evidence file."""
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


def run_pids(path: Path) -> dict[str, list[int]]:
    """The PIDs each tag's job ran in."""
    out: dict[str, list[int]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.setdefault(parts[0], []).append(int(parts[1]))
    return out


def loss_problems(t: Tally, ran: Counter[str], tags: Iterable[str]) -> list[str]:
    """The contract's violations: handle problems, and jobs that never ran."""
    problems = t.problems()
    never = [tag for tag in tags if ran[tag] == 0]
    if never:
        problems.append(f"{len(never)} jobs never ran (e.g. {never[:5]})")
    return problems


def report(name: str, t: Tally, ran: Counter[str], elapsed: float, **more: Any) -> str:
    """One line for the test's output (pytest -s / -rA): the numbers of this run."""
    twice = sum(1 for n in ran.values() if n > 1)
    extra = " ".join(f"{k}={v}" for k, v in more.items())
    line = f"[{name}] {t.summary()} ran_twice={twice} elapsed={elapsed:.1f}s {extra}".rstrip()
    print(line)
    return line


# -- fixtures -------------------------------------------------------------------------------------

ProxyFactory = Callable[[Distributor], TcpProxy]


@pytest.fixture
def make_proxy() -> Iterator[ProxyFactory]:
    """``make_proxy(distributor)``: a :class:`TcpProxy` to it; all are closed at teardown."""
    proxies: list[TcpProxy] = []

    def factory(d: Distributor) -> TcpProxy:
        proxy = TcpProxy(d.host, d.port, lifetime=240.0)
        proxies.append(proxy)
        return proxy

    yield factory
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    """Network namespaces for one test (skipped without root; failed under CI=true)."""
    require_netns()
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def clock() -> Callable[[], float]:
    """Seconds since the test started (for reports)."""
    start = time.monotonic()
    return lambda: time.monotonic() - start
