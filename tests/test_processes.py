"""Issue 19: ``reactor node --processes N``, a supervisor of N ordinary node processes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reactor import Config, Distributor
from reactor.cli import build_parser
from reactor.cli import supervisor as S
from reactor.errors import ConfigError
from reactor.testing.redis_server import bindable
from reactor.testing.support import NodeProcess, async_wait_until

from .conftest import FAST, NodeFactory, lines, wait_for_node


def two_free_ports() -> int:
    """A port P with P and P + 1 both free, below Linux's ephemeral range (32768-60999) and
    above the Cluster fixture's bands (11000-30999), so no outgoing connection can take P + 1
    between this check and the child's bind (a free_port() base lost P + 1 so, once)."""
    for _ in range(500):
        port = random.randrange(31_000, 32_700)
        if all(bindable(p) for p in (port, port + 1)):
            return port
    raise RuntimeError("no two consecutive free ports in 31000-32700")


# -- the restart rule, on a fake clock -----------------------------------------------------------


def test_process_count_reads_numbers_and_auto() -> None:
    assert S.process_count(None) == 1
    assert S.process_count("3") == 3
    assert S.process_count("auto") == (os.cpu_count() or 1)
    for bad in ("0", "-1", "abc", "1.5", ""):
        with pytest.raises(ConfigError, match="whole number >= 1 or 'auto'"):
            S.process_count(bad)


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_a_bad_process_count_is_one_usage_line(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = build_parser().parse_args(
        ["node", "--name", "w", "--distributor", "127.0.0.1:1", "--processes", value]
    )
    assert ns.func(ns) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reactor node: --processes must be"), err


def test_each_child_runs_the_same_arguments_under_its_own_name_and_port() -> None:
    argv = ["--log-level", "DEBUG", "node", "--name", "w", "--processes", "2", "--set", "a=1"]
    cmd = S.child_command(argv, "w-2", 9101)
    assert cmd[:3] == [sys.executable, "-m", "reactor"]
    assert cmd[3:] == [*argv, "--name", "w-2", "--processes", "1", "--metrics-port", "9101"]
    ns = build_parser().parse_args(cmd[3:])  # argparse keeps the last value of each option
    assert (ns.name, ns.processes, ns.metrics_port, ns.set) == ("w-2", "1", 9101, ["a=1"])
    ports = S.Supervisor("w", 3, argv=argv, metrics_port=9100).children
    assert [(c.name, c.metrics_port) for c in ports] == [
        ("w-1", 9100),
        ("w-2", 9101),
        ("w-3", 9102),
    ]
    assert [S.child_port(0, i) for i in (1, 2)] == [0, 0]  # each a free port
    assert S.child_port(None, 2) is None


def test_restarts_back_off_doubling_to_the_cap_and_reset_after_a_healthy_run() -> None:
    child = S.Child("w-1")
    now, waits = 0.0, []
    for _ in range(9):
        child.started(now)
        now += 100.0  # lived long enough to be healthy, so never a crash loop
        assert child.died(now, 1) is None
        waits.append(child.due - now if child.due is not None else None)
    assert waits == [S.FIRST_DELAY] * 9
    child = S.Child("w-1")
    now, waits = 0.0, []
    for i in range(12):
        child.started(now)
        now += 16.0 if i < 11 else 61.0  # 16 s runs: never 5 deaths within 60 s
        assert child.died(now, -9) is None
        assert child.due is not None
        waits.append(child.due - now)
        now = child.due
    assert waits[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert waits[-1] == S.FIRST_DELAY  # the last run lived 61 s


def test_five_deaths_within_a_minute_are_a_crash_loop() -> None:
    child = S.Child("w-1")
    now = 0.0
    for _ in range(S.CRASH_DEATHS - 1):
        child.started(now)
        assert child.died(now + 1.0, 1) is None
        assert child.due is not None
        now = child.due
    child.started(now)
    child.heard(b"Traceback ...\nRuntimeError: out of luck\n")
    why = child.died(now + 1.0, 1)
    assert why == "w-1 died 5 times within 60 s, last exited with code 1: RuntimeError: out of luck"


def test_a_configuration_error_stops_at_once_naming_its_cause() -> None:
    child = S.Child("w-2")
    child.started(0.0)
    assert child.heard(b"reactor node: ConfigError: job file x.py failed") == b""
    assert child.heard(b" to load\nTask was destroyed\n") == (
        b"reactor node: ConfigError: job file x.py failed to load\nTask was destroyed\n"
    )
    why = child.died(1.0, S.CONFIG_ERROR_EXIT)
    assert why == (
        "w-2 exited with code 2 (a configuration error): ConfigError: job file x.py failed to load"
    )
    assert S.describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


# -- real processes ------------------------------------------------------------------------------


@pytest.fixture
async def strict() -> AsyncIterator[Distributor]:
    """A distributor that keeps a pinned job for its node even while the node is away."""
    config = Config(**FAST, always_use_specified_node=True)
    async with Distributor("127.0.0.1", 0, config=config) as d:
        yield d


async def _supervised(d: Distributor, start_node: NodeFactory, name: str = "w") -> NodeProcess:
    sup = start_node(name, [d.address], extra=["--processes", "2"])
    for i in (1, 2):
        await wait_for_node(d, f"{name}-{i}", timeout=30, proc=sup)
    return sup


async def _pid_of(d: Distributor, node: str, timeout: float = 15) -> int:
    result = await asyncio.wait_for(d.enqueue("record", {}, node=node), timeout)
    return int(result["pid"])


@pytest.mark.slow
async def test_two_processes_are_two_named_nodes_and_pinning_works_per_child(
    strict: Distributor, start_node: NodeFactory
) -> None:
    sup = await _supervised(strict, start_node)
    first = {await _pid_of(strict, "w-1") for _ in range(5)}
    second = {await _pid_of(strict, "w-2") for _ in range(5)}
    assert len(first) == 1 and len(second) == 1 and first != second
    assert sup.pid not in first | second  # the supervisor does no job work
    assert "w" not in strict.snapshot()["nodes"]
    assert await asyncio.to_thread(sup.terminate) == 0


@pytest.mark.slow
async def test_a_killed_child_is_restarted_under_its_name_and_jobs_keep_flowing(
    strict: Distributor, start_node: NodeFactory
) -> None:
    sup = await _supervised(strict, start_node)
    old, other = await _pid_of(strict, "w-1"), await _pid_of(strict, "w-2")
    os.kill(old, signal.SIGKILL)
    await async_wait_until(
        lambda: "w-1 (pid" in sup.output() and "restarting it in" in sup.output(), 15
    )
    assert await _pid_of(strict, "w-2") == other  # the sibling serves on meanwhile
    new = await _pid_of(strict, "w-1", timeout=30)  # waits for w-1's return
    assert new not in (old, other)
    results = await asyncio.wait_for(
        asyncio.gather(*(strict.enqueue("record", {}) for _ in range(20))), 15
    )
    assert {r["pid"] for r in results} <= {new, other}
    assert sup.proc.poll() is None
    assert await asyncio.to_thread(sup.terminate) == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_stops_every_child_gracefully_and_exits_zero(
    sig: signal.Signals, strict: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    sup = await _supervised(strict, start_node)
    path = tmp_path / "started.txt"
    running = [
        strict.enqueue("async_sleep", {"seconds": 1.5, "path": str(path)}, node=f"w-{i}")
        for i in (1, 2)
    ]
    await async_wait_until(lambda: len(lines(path)) == 2, 15)
    sup.signal(sig)
    assert await asyncio.to_thread(sup.wait, 30) == 0
    done = await asyncio.wait_for(asyncio.gather(*running), 5)  # finished, not lost
    assert all("finished" in r for r in done)
    log = sup.output()
    assert "node w-1 stopped" in log and "node w-2 stopped" in log, log[-3000:]
    assert "supervisor: every node process stopped" in log


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_a_killed_supervisor_leaves_no_orphans(
    strict: Distributor, start_node: NodeFactory
) -> None:
    sup = await _supervised(strict, start_node)
    pids = [await _pid_of(strict, f"w-{i}") for i in (1, 2)]
    sup.kill()
    await async_wait_until(lambda: all(_gone(p) for p in pids), 30)


@pytest.mark.slow
async def test_a_job_directory_that_does_not_load_stops_the_supervisor_with_one_line(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "broken.py").write_text("def broken(:\n")
    sup = start_node("w", [distributor.address], jobs=jobs, extra=["--processes", "2"])
    assert await asyncio.to_thread(sup.wait, 15) == 1
    last = sup.output().strip().splitlines()[-1]
    assert last.startswith("reactor node: stopped: w-"), last
    assert "configuration error" in last and "SyntaxError" in last and "broken.py" in last


@pytest.mark.slow
async def test_a_child_that_keeps_dying_is_a_crash_loop(
    distributor: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "dies.py").write_text("import os\n\nos._exit(3)  # dies as the node loads it\n")
    # argparse keeps the last value, even abbreviated: two children, each given --processes 1
    sup = start_node("w", [distributor.address], jobs=jobs, extra=["--processes", "1", "--proc=2"])
    assert await asyncio.to_thread(sup.wait, 90) == 1
    log = sup.output()
    assert log.count("exited with code 3; restarting it in") >= S.CRASH_DEATHS - 1, log[-3000:]
    last = log.strip().splitlines()[-1]
    assert last.startswith("reactor node: stopped: w-"), last
    assert last.endswith("died 5 times within 60 s, last exited with code 3"), last


@pytest.mark.slow
async def test_a_second_signal_kills_the_children(
    strict: Distributor, start_node: NodeFactory, tmp_path: Path
) -> None:
    sup = await _supervised(strict, start_node)
    pids = [await _pid_of(strict, f"w-{i}") for i in (1, 2)]
    path = tmp_path / "started.txt"
    strict.enqueue("async_sleep", {"seconds": 60, "path": str(path)}, node="w-1")
    await async_wait_until(lambda: len(lines(path)) == 1, 15)
    sup.signal(signal.SIGTERM)  # w-1 waits for its running job
    await async_wait_until(lambda: "stopping 2 node processes gracefully" in sup.output(), 15)
    sup.signal(signal.SIGTERM)
    assert await asyncio.to_thread(sup.wait, 15) == 1
    assert sup.output().strip().splitlines()[-1] == (
        "reactor node: stopped: second signal; node processes killed"
    )
    await async_wait_until(lambda: all(_gone(p) for p in pids), 15)


@pytest.mark.slow
async def test_each_child_serves_metrics_on_its_own_port(
    strict: Distributor, start_node: NodeFactory
) -> None:
    base = two_free_ports()
    sup = start_node("w", [strict.address], extra=["--processes", "2", "--metrics-port", str(base)])
    for i in (1, 2):
        await wait_for_node(strict, f"w-{i}", timeout=30, proc=sup)
    await _pid_of(strict, "w-2")
    pages = [
        await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        for port in (base, base + 1)
    ]
    assert all("reactor_jobs_started" in page for page in pages)
    # the job pinned to w-2 shows on w-2's port only
    assert 'job_name="record"' in pages[1] and 'job_name="record"' not in pages[0]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())
