"""Fork safety of the facade: a distributor started before ``fork`` (gunicorn ``--preload``,
``multiprocessing`` with fork) is started again in the child on first use, or says what to do.

Each case runs as a script in its own process, forking for real with the reactor thread running.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from reactor.testing import free_port

from .conftest import JOBS

PRELUDE = f"""
import logging, os, sys
import reactor as JR
logging.basicConfig(level=logging.INFO)
JR.config["log_job_processing"] = False
JOBS = {str(JOBS)!r}

def all_in_one(name):
    address = JR.snapshot()["address"]
    JR.start_node(name=name, distributors=[address], job_directory=JOBS)
    return address
"""


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_distributor_started_before_fork_is_restarted_in_the_child_on_first_use() -> None:
    out = run(
        """
        JR.start_distributor("127.0.0.1", 0)
        parent_address = all_in_one("parent")
        assert JR.enqueue("record", {}).result(timeout=20)["pid"] == os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                handle = JR.enqueue("record", {})  # first use: a new distributor in this process
                address = all_in_one("child")
                result = handle.result(timeout=20)
                print("child", address != parent_address, result["pid"] == os.getpid(), flush=True)
                print("child lost", JR.stop(), flush=True)
            finally:
                os._exit(0)
        after = JR.enqueue("record", {}).result(timeout=20)  # the parent's reactor is unharmed
        _, status = os.waitpid(pid, 0)
        print("parent", after["pid"] == os.getpid(), os.waitstatus_to_exitcode(status), flush=True)
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "child True True" in out.stdout, out.stdout + out.stderr[-3000:]
    assert "child lost 0" in out.stdout
    assert "parent True 0" in out.stdout
    assert "is a fork of" in out.stderr  # the restart is logged


def test_a_fixed_port_held_by_the_parent_gives_the_child_a_clear_error() -> None:
    out = run(
        f"""
        JR.start_distributor("127.0.0.1", {free_port()})
        pid = os.fork()
        if pid == 0:
            try:
                JR.enqueue("record", {{}})
            except JR.ReactorError as exc:
                print("child error:", exc, flush=True)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        """
    )
    assert out.returncode == 0, out.stderr[-3000:]
    error = out.stdout.split("child error:", 1)[-1]
    assert "is a fork of pid" in error and "already in use" in error, out.stdout + out.stderr
    assert "--preload" in error and "port 0" in error
