"""The ``reactor`` module facade, the examples, and the distributor's own limits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import reactor as JR
from reactor import BackPressureError, Config, ConfigError, Distributor
from reactor.testing import async_wait_until

from .conftest import JOBS

ROOT = Path(__file__).parent.parent


def test_facade_runs_a_distributor_and_a_node_in_one_process(tmp_path: Path) -> None:
    from reactor.testing.support import free_port

    port = free_port()
    saved = dict(JR.config)
    JR.config["log_job_processing"] = False
    try:
        JR.run()
        JR.run()  # a second call does not start a second loop
        JR.start_distributor("127.0.0.1", port)
        JR.start_node(name="inproc", distributors=[("127.0.0.1", port)], job_directory=JOBS)
        assert JR.ready()
        seen: list[dict[str, object]] = []
        results: list[dict[str, object]] = []

        def app_thread() -> None:
            handle = JR.enqueue("chain", {"n": 1}, on_success=seen.append)
            results.append(handle.result(timeout=10))

        worker = threading.Thread(target=app_thread)
        worker.start()
        worker.join(15)
        assert results and results[0]["order"] == ["body", "first", "second"]
        assert seen == results
        view = JR.snapshot()
        assert [n["name"] for n in view["nodes"]] == ["inproc"]
    finally:
        JR.stop()
        for key, value in saved.items():
            JR.config[key] = value
    assert not JR.ready()
    with pytest.raises(JR.ReactorError, match="start_distributor"):
        JR.enqueue("chain", {})


def test_facade_config_rejects_unknown_keys() -> None:
    with pytest.raises(KeyError, match="valid keys"):
        JR.config["max_attempts"] = 1
    with pytest.raises(ConfigError):
        JR.config["max_attempt"] = "three"


def test_all_in_one_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, "examples/all_in_one.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Hello, all in one!" in out.stdout


async def test_waiting_buffer_is_bounded_and_says_so() -> None:
    async with Distributor("127.0.0.1", 0, config=Config(max_waiting_jobs=5)) as d:
        for _ in range(5):
            d.enqueue("record", {})
        with pytest.raises(BackPressureError, match="5 jobs already wait"):
            d.enqueue("record", {})


async def test_an_idle_distributor_with_waiting_jobs_does_not_spin() -> None:
    async with Distributor("127.0.0.1", 0, config=Config(heartbeat_interval=0.2)) as d:
        for _ in range(100):
            d.enqueue("record", {})
        await async_wait_until(lambda: d.snapshot()["waiting"] == 100, 5)
        me = psutil.Process()
        before = sum(me.cpu_times()[:2])
        wall = time.monotonic()
        await asyncio.sleep(1.0)  # the measurement's window: CPU used while idle
        used = sum(me.cpu_times()[:2]) - before
        assert d.snapshot()["waiting"] == 100
        assert used < 0.1 * (time.monotonic() - wall), f"idle distributor used {used:.3f}s CPU"


async def test_a_feedback_callable_that_raises_does_not_break_the_distributor(
    distributor: Distributor,
    start_node,
    caplog,  # type: ignore[no-untyped-def]
) -> None:
    from .conftest import wait_for_node

    proc = start_node("w1", [distributor.address])
    await wait_for_node(distributor, "w1", proc=proc)

    def broken(args: dict[str, object]) -> None:
        raise RuntimeError("feedback bug")

    first = await asyncio.wait_for(distributor.enqueue("record", {}, on_success=broken), 10)
    assert first["result"] == "ok"
    assert "feedback of job" in caplog.text and "feedback bug" in caplog.text
    second = await asyncio.wait_for(distributor.enqueue("record", {}), 10)
    assert second["result"] == "ok"


async def test_run_forever_serves_a_node_until_sigterm(distributor: Distributor) -> None:
    import signal

    from .conftest import wait_for_node

    script = (
        "import reactor as JR\n"
        "JR.config['log_job_processing'] = False\n"
        f"JR.run_forever(lambda: JR.start_node(name='forever', job_directory={str(JOBS)!r},\n"
        f"    distributors=[('127.0.0.1', {distributor.port})]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        await wait_for_node(distributor, "forever")
        result = await asyncio.wait_for(distributor.enqueue("record", {"tag": "f"}), 10)
        assert result["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_run_returns_after_its_function_ran_and_a_bind_failure_raises_in_the_caller() -> None:
    """README Quick start's pattern: JR.run(fn) returns once fn ran; a taken port raises here."""
    import socket

    from reactor.testing import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            with pytest.raises(JR.ReactorError, match=r"already in use.*port 0"):
                JR.run(lambda: JR.start_distributor("127.0.0.1", port))
            assert not JR.ready()
        finally:
            JR.stop()
    try:
        JR.run(lambda: JR.start_distributor("127.0.0.1", free_port()))
        assert JR.ready()
        JR.enqueue("record", {})  # the distributor exists as soon as JR.run returned
    finally:
        assert JR.stop() == 1  # no node: the job was never stored (drain_timeout from tests/)
    assert not JR.ready()
