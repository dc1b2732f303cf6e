"""Issue 22: an application with no node. result(timeout=) says no node is connected and how many
jobs wait; the loss report at exit says how long it really waited; a Ctrl-C during that drain
says what it waits for, and a second one stops waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import reactor as JR
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("reactor.distributor").setLevel(logging.INFO)  # "exiting: waiting ..."
    JR.config["drain_timeout"] = float(sys.argv[1])
    JR.start_distributor("127.0.0.1", 0)
    handles = [JR.enqueue("noop", {}) for _ in range(3)]
    try:
        handles[0].result(timeout=0.5)
    except JR.JobTimeoutError as exc:
        print("timeout:", exc, flush=True)
    print("exiting", flush=True)
    """
)


def start(drain_timeout: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(drain_timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_the_timeout_says_no_node_is_connected_and_the_report_how_long_it_waited() -> None:
    app = start(drain_timeout=1.5)
    out, err = app.communicate(timeout=60)
    assert app.returncode == 0, err
    timeout = next(line for line in out.splitlines() if line.startswith("timeout:"))
    assert "did not finish within 0.5s" in timeout
    assert "no node is connected to distributor 127.0.0.1:" in timeout
    assert "3 jobs wait for one" in timeout
    [report] = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert "3 jobs no node had stored after waiting 1.5s (drain_timeout)" in report, err


def test_ctrl_c_during_the_drain_says_what_it_waits_for_and_a_second_stops_waiting() -> None:
    app = start(drain_timeout=60.0)
    assert app.stdout is not None and app.stderr is not None
    while "exiting" not in app.stdout.readline():
        assert app.poll() is None, app.communicate()
    # The drain at exit has begun (a Ctrl-C from now on is its own) when it says so.
    while not (said := app.stderr.readline()).startswith("INFO reactor.distributor: exiting:"):
        assert said, app.communicate()
    assert "store the 3 job(s)" in said, said
    app.send_signal(signal.SIGINT)
    first = app.stderr.readline()
    assert first.startswith("WARNING reactor.distributor: Ctrl-C: waiting ("), first
    assert "more, drain_timeout) for a node to store the 3 job(s)" in first
    assert "Ctrl-C again to stop waiting" in first
    began = time.monotonic()
    app.send_signal(signal.SIGINT)
    _, rest = app.communicate(timeout=30)
    took = time.monotonic() - began
    assert took < 5.0, f"the second Ctrl-C left it waiting {took:.1f}s:\n{rest}"
    assert "second Ctrl-C: no longer waiting" in rest, rest
    [report] = [line for line in rest.splitlines() if line.startswith("ERROR")]
    assert "(waiting stopped by Ctrl-C); they are lost: noop x3" in report, rest
    assert "Traceback" not in rest and "Task was destroyed" not in rest, rest


def test_without_a_drain_the_report_says_it_did_not_wait() -> None:
    """drain_timeout=0: nothing is waited for, and the report says 0.0s."""
    app = start(drain_timeout=0.0)
    _, err = app.communicate(timeout=60)
    assert "after waiting 0.0s (drain_timeout)" in err, err
