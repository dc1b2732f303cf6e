"""Applications that stop (DESIGN §3): JR.stop(), Distributor.stop() and the interpreter's exit
drain the distributor's jobs to a node first, and report at ERROR what no node stored."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reactor import Config, Distributor
from reactor.testing import free_port, wait_until

from .conftest import FAST, NodeFactory, lines, wait_for_node

JOBS_COUNT = 2000


def app_script(port: int, path: Path, *, ending: str, drain_timeout: float = 10.0) -> str:
    """An application that enqueues JOBS_COUNT jobs and ends with ``ending``."""
    return textwrap.dedent(
        f"""
        import sys, time
        import reactor as JR
        JR.config["drain_timeout"] = {drain_timeout}
        JR.start_distributor("127.0.0.1", {port})
        for i in range({JOBS_COUNT}):
            JR.enqueue("record", {{"path": {str(path)!r}, "tag": str(i)}})
        print("enqueued", time.monotonic(), flush=True)
        """
    ) + textwrap.dedent(ending)


def run_app(script: str, timeout: float = 60.0) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``script``; returns the result and the seconds from its "enqueued" line to its exit."""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    ended = time.monotonic()
    marks = [line for line in out.stdout.splitlines() if line.startswith("enqueued")]
    assert marks, f"the application did not enqueue:\n{out.stderr[-3000:]}"
    return out, ended - float(marks[0].split()[1])


def ran_tags(path: Path) -> set[str]:
    return {line.split()[0] for line in lines(path)}


@pytest.mark.parametrize("ending", ["", "print('lost', JR.stop())\n"], ids=["exit", "JR.stop"])
def test_a_script_that_enqueues_2000_jobs_and_exits_loses_none(
    tmp_path: Path, start_node: NodeFactory, ending: str
) -> None:
    port = free_port()
    path = tmp_path / "ran.txt"
    node = start_node("w1", [f"127.0.0.1:{port}"], capacity=1024)
    out, drained = run_app(app_script(port, path, ending=ending))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ERROR" not in out.stderr, out.stderr[-3000:]
    if ending:
        assert "lost 0" in out.stdout
    wait_until(
        lambda: len(ran_tags(path)) == JOBS_COUNT,
        30,
        message=f"{JOBS_COUNT - len(ran_tags(path))} jobs never ran:\n{node.output()[-2000:]}",
    )
    assert ran_tags(path) == {str(i) for i in range(JOBS_COUNT)}
    print(f"drained {JOBS_COUNT} jobs at exit in {drained:.2f}s")


@pytest.mark.parametrize("ending", ["", "print('lost', JR.stop())\n"], ids=["exit", "JR.stop"])
def test_with_no_node_reachable_the_exit_says_how_many_jobs_were_lost_and_which(
    tmp_path: Path, ending: str
) -> None:
    port = free_port()
    out, drained = run_app(app_script(port, tmp_path / "ran.txt", ending=ending, drain_timeout=1.0))
    assert out.returncode == 0, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if "they are lost" in line]
    assert len(errors) == 1, out.stderr[-3000:]
    assert f"holding {JOBS_COUNT} jobs" in errors[0] and f"record x{JOBS_COUNT}" in errors[0]
    if ending:
        assert f"lost {JOBS_COUNT}" in out.stdout
    assert 1.0 <= drained < 1.0 + 10.0, f"exit took {drained:.1f}s for drain_timeout 1.0"
    print(f"no node: exit {drained:.2f}s after enqueueing {JOBS_COUNT} jobs (drain_timeout 1.0)")


def test_a_sigterm_handled_by_the_application_drains_before_it_exits(
    tmp_path: Path, start_node: NodeFactory
) -> None:
    """The shape of gunicorn's graceful worker exit: SIGTERM is handled, then a normal exit."""
    port = free_port()
    path = tmp_path / "ran.txt"
    count = 300
    script = textwrap.dedent(
        f"""
        import signal, sys, threading
        import reactor as JR
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        JR.config["drain_timeout"] = 20.0
        JR.start_distributor("127.0.0.1", {port})
        for i in range({count}):
            JR.enqueue("async_sleep", {{"path": {str(path)!r}, "seconds": 0.02}})
        print("enqueued", flush=True)
        threading.Event().wait()
        """
    )
    # Five at a time, 20 ms each: the node needs over a second, so most jobs are still held by
    # the application when it gets SIGTERM.
    start_node("slow", [f"127.0.0.1:{port}"], capacity=5)
    app = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert app.stdout is not None and app.stdout.readline().startswith("enqueued")
        app.send_signal(signal.SIGTERM)
        _, stderr = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
    assert app.returncode == 0, stderr[-3000:]
    assert "they are lost" not in stderr
    wait_until(lambda: len(lines(path)) >= count, 30, message=f"{len(lines(path))} of {count} ran")


async def test_drain_returns_what_no_node_stored_and_stop_reports_it(
    caplog: pytest.LogCaptureFixture, start_node: NodeFactory
) -> None:
    d = Distributor("127.0.0.1", 0, config=Config(**FAST))
    await d.start()
    for _ in range(3):
        d.enqueue("record", {})
    d.enqueue("chain", {})
    assert await d.drain(0.2) == 4
    node = start_node("w1", [d.address])
    await wait_for_node(d, "w1", proc=node)
    assert await d.drain(20) == 0
    await d.stop()
    assert "they are lost" not in caplog.text

    alone = Distributor("127.0.0.1", 0, config=Config(**FAST))
    await alone.start()
    handles = [alone.enqueue("record", {}) for _ in range(3)] + [alone.enqueue("chain", {})]
    with caplog.at_level(logging.ERROR, logger="reactor.distributor"):
        began = time.monotonic()
        assert await alone.stop(drain_timeout=0.3) == 4
    assert time.monotonic() - began >= 0.3
    assert "holding 4 jobs" in caplog.text and "record x3, chain x1" in caplog.text
    assert all(h.done() for h in handles)
    with pytest.raises(Exception, match="not running"):
        alone.enqueue("record", {})


def test_only_the_main_thread_takes_the_applications_signals() -> None:
    """A SIGTERM must reach the application's main thread: a main thread blocked in a lock
    (``Event.wait()``) wakes only if the kernel gives the signal to it, not to reactor's threads."""
    script = textwrap.dedent(
        """
        import glob, os, signal
        import reactor as JR
        JR.start_distributor("127.0.0.1", 0)
        term = 1 << (signal.SIGTERM - 1)
        for task in glob.glob(f"/proc/{os.getpid()}/task/*/status"):
            fields = dict(line.split(":", 1) for line in open(task).read().splitlines())
            blocked = int(fields["SigBlk"].strip(), 16) & term != 0
            print("main" if task.split("/")[-2] == str(os.getpid()) else "other", blocked)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    threads = out.stdout.split("\n")
    assert "main False" in threads, out.stdout
    assert "other True" in threads and "other False" not in threads, out.stdout
