"""Shared fixtures: a distributor in the test process, node processes started with the CLI."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reactor import Config, Distributor
from reactor.testing.support import NodeProcess, async_wait_until

JOBS = Path(__file__).parent / "jobs"

#: Fast liveness for tests; the defaults (1 s / 5 s) are for production.
FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": 2.0, "log_job_processing": False}


@pytest.fixture
def config() -> Config:
    return Config(**FAST)


@pytest.fixture
async def distributor(config: Config) -> AsyncIterator[Distributor]:
    d = Distributor("127.0.0.1", 0, config=config)
    await d.start()
    yield d
    await d.stop()


NodeFactory = Callable[..., NodeProcess]


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[NodeFactory]:
    """Start ``reactor node`` processes; every one is killed at teardown."""
    started: list[NodeProcess] = []

    def factory(
        name: str,
        distributors: list[str],
        *,
        settings: dict[str, Any] | None = None,
        jobs: Path = JOBS,
        **kw: Any,
    ) -> NodeProcess:
        merged = {k: v for k, v in FAST.items()}
        merged.update(settings or {})
        proc = NodeProcess(
            name,
            distributors,
            jobs=jobs,
            settings=merged,
            log_path=tmp_path / f"{name}-{len(started)}.log",
            **kw,
        )
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.__exit__(None, None, None)


async def wait_for_node(
    d: Distributor, name: str, timeout: float = 15.0, proc: NodeProcess | None = None
) -> None:
    """Wait until ``d`` sees node ``name`` connected (failing fast if ``proc`` exits)."""

    def up() -> bool:
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(
                f"node {name} exited with {proc.proc.returncode}:\n{proc.output()[-3000:]}"
            )
        return d.node_alive(name)

    await async_wait_until(up, timeout, message=f"node {name} did not connect in {timeout}s")


async def start_two(
    d: Distributor, start_node: NodeFactory, **kw: Any
) -> tuple[NodeProcess, NodeProcess]:
    """Node processes A and B dialing ``d`` (``kw`` goes to both), once ``d`` sees both."""
    a = start_node("A", [d.address], **kw)
    b = start_node("B", [d.address], **kw)
    await wait_for_node(d, "A", proc=a)
    await wait_for_node(d, "B", proc=b)
    return a, b


def scrape(port: int) -> str:
    """The Prometheus exposition a node or distributor serves on ``port`` now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


def value(text: str, sample: str) -> float:
    """The value of one exposition line (0 when the series is absent)."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def lines(path: Path) -> list[str]:
    """The lines a job wrote to ``path`` so far."""
    return path.read_text().splitlines() if path.exists() else []


class Recorder:
    """Collects feedback calls with the time they arrived."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, Any]]] = []

    def __call__(self, args: dict[str, Any]) -> None:
        self.calls.append((time.time(), args))

    @property
    def args(self) -> list[dict[str, Any]]:
        return [a for _, a in self.calls]
