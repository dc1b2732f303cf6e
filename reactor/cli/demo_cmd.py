"""``reactor demo``: a distributor here and a node process, memory storage, a few example jobs."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from reactor.cli import exits
from reactor.errors import JobFailed, ReactorError
from reactor.testing.support import NodeProcess, free_port, wait_until

log = logging.getLogger("reactor.cli")


def add_parser(sub: Any) -> None:
    """Register the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="run a distributor and a node and show jobs flowing")
    p.add_argument(
        "--jobs",
        default=None,
        metavar="DIR",
        help="the example job directory (default: the copy shipped inside the package)",
    )
    p.add_argument("--port", type=int, default=0, help="distributor port (default: a free one)")
    p.set_defaults(func=run)


def demo_jobs_dir() -> Path:
    """The demo's job files: ``reactor/demo_jobs/`` in a wheel (the build copies the repository's
    ``reactor_jobs/`` there, so the demo runs from any directory), else the repository's own
    ``reactor_jobs/`` (a source checkout or an editable install): one copy of the files."""
    package = Path(__file__).resolve().parent.parent
    shipped = package / "demo_jobs"
    return shipped if shipped.is_dir() else package.parent / "reactor_jobs"


def _say(text: str) -> None:
    print(text, flush=True)


def run(ns: argparse.Namespace) -> int:
    """Enqueue the example jobs, print their feedback, stop everything; 0 when all went as shown."""
    import reactor as JR

    jobs = Path(ns.jobs) if ns.jobs else demo_jobs_dir()
    if not (jobs / "greetings.py").is_file():
        _say(f"reactor demo: no example jobs in {jobs}/ (pass --jobs DIR with the demo's jobs)")
        return exits.USAGE
    port = ns.port or free_port()
    JR.config["log_job_processing"] = False
    JR.config["max_attempt"] = 2
    JR.config["retry_multiplier"] = 0.2
    JR.run()
    JR.start_distributor("127.0.0.1", port)
    _say(f"distributor listening on 127.0.0.1:{port}; starting node 'demo_node' ...")
    node = NodeProcess(
        "demo_node",
        [f"127.0.0.1:{port}"],
        jobs=jobs,
        settings={"max_attempt": 2, "retry_multiplier": 0.2, "log_job_processing": False},
    )
    try:
        return _show(JR, node)
    except (ReactorError, AssertionError) as exc:
        _say(f"reactor demo failed: {exc}")
        return exits.FAILURE
    finally:
        code = node.terminate(timeout=15)
        _say(f"node stopped (exit code {code})")
        JR.stop()


def _show(JR: Any, node: NodeProcess) -> int:
    wait_until(
        lambda: any(n["alive"] for n in JR.snapshot()["nodes"]),
        20,
        message="the demo node did not connect within 20 s",
    )
    _say("node connected\n")
    feedback: list[str] = []

    def report(label: str) -> Any:
        def show(args: dict[str, Any]) -> None:
            shown = {k: v for k, v in args.items() if k != "error"}
            if "error" in args:
                shown["error"] = str(args["error"])
            line = f"  feedback [{label}]: {shown}"
            feedback.append(line)
            _say(line)

        return show

    began = time.monotonic()
    hello = JR.enqueue("hello", {"name": "reactor"}, on_success=report("hello: success"))
    divide = JR.enqueue(
        "divide",
        {"a": 1, "b": 0},
        on_success=report("divide: success"),
        on_error=report("divide: error after 2 attempts"),
    )
    later = JR.enqueue(
        "fetch",
        {"url": "/later", "delay": 0.05},
        after=0.5,
        on_success=report("fetch after 0.5 s: success"),
    )
    tick = JR.enqueue("tick", {"stop_at": 3}, period=0.3, on_success=report("tick every 0.3 s"))
    many = [JR.enqueue("fetch", {"url": f"/{i}", "delay": 0.2}) for i in range(50)]
    _say(
        "enqueued hello, divide (fails), fetch after 0.5 s, tick every 0.3 s, "
        "and 50 async fetches\n"
    )
    assert hello.result(10)["shouted"] == "HELLO, REACTOR!"
    try:
        divide.result(10)
        raise AssertionError("divide by zero should have failed")
    except JobFailed as exc:
        assert exc.type_name == "ZeroDivisionError"
    later.result(10)
    assert tick.result(10)["count"] == 3
    for handle in many:
        handle.result(10)
    _say(
        f"\n50 async fetches of 0.2 s each finished together; all done in "
        f"{time.monotonic() - began:.2f} s"
    )
    _say(f"{len(feedback)} feedback calls received; node view: {JR.snapshot()['nodes'][0]}")
    sys.stdout.flush()
    return exits.OK
