"""The nemesis's application process: a distributor (group, outbox, result store) enqueueing jobs.

Run by the harness as ``python -m tests.nemesis.app``; killed, frozen, terminated and restarted
on the same port by the schedule. It enqueues a mix of jobs (at once, ``after=``, retried then
successful, failing, some with ``not_node=``) until the stop file appears, writing ``accepted``
in its ledger right after each ``enqueue`` returns and ``outcome`` from ``on_success`` /
``on_error``; then it only serves feedback. SIGTERM ends it by the interpreter's normal exit,
which drains.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import reactor as JR
from reactor.errors import ReactorError
from tests.nemesis.ledger import LedgerWriter

GROUP = "nemesis"

#: kind -> (weight, job name, enqueue options besides not_node)
MIX: dict[str, tuple[int, str, dict[str, Any]]] = {
    "now": (50, "nemesis_ok", {"max_attempt": 5}),
    "after": (15, "nemesis_ok", {"max_attempt": 5}),
    "retried": (15, "nemesis_flaky", {"max_attempt": 4}),
    "failing": (10, "nemesis_fail", {"max_attempt": 2}),
}
NOT_NODE_SHARE = 0.2


class Workload:
    """Draws jobs and enqueues them, noting each accepted one and each outcome heard."""

    def __init__(self, name: str, nodes: list[str], ledger: LedgerWriter, seed: str) -> None:
        self.name = name
        self.nodes = nodes
        self.ledger = ledger
        self.rng = random.Random(seed)  # the workload's own randomness, not the schedule's
        self.count = 0

    def _feedback(self, nid: str, outcome: str) -> Callable[[dict[str, Any]], None]:
        def heard(args: dict[str, Any]) -> None:
            error = args.get("error")
            type_name = getattr(error, "type_name", "-") if error is not None else "-"
            self.ledger.write("outcome", nid, outcome, type_name)

        return heard

    def draw(self) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        """(kind, job name, args, options) of the next job."""
        kinds = list(MIX)
        kind = self.rng.choices(kinds, [MIX[k][0] for k in kinds])[0]
        _, job_name, options = MIX[kind]
        options = dict(options)
        args: dict[str, Any] = {"seconds": round(self.rng.uniform(0.02, 0.5), 3)}
        if kind == "after":
            options["after"] = round(self.rng.uniform(0.5, 4.0), 2)
        if kind == "retried":
            args["succeed_at"] = 2
        if self.rng.random() < NOT_NODE_SHARE:
            options["not_node"] = self.rng.choice(self.nodes)
        return kind, job_name, args, options

    def enqueue_one(self) -> None:
        kind, job_name, args, options = self.draw()
        self.count += 1
        nid = f"{self.name}-{os.getpid()}-{self.count}"
        args["nid"] = nid
        try:
            handle = JR.enqueue(
                job_name,
                args,
                on_success=self._feedback(nid, "success"),
                on_error=self._feedback(nid, "error"),
                **options,
            )
        except ReactorError as exc:  # not accepted: Redis down, back pressure, ...
            self.ledger.write("refused", type(exc).__name__)
            return
        self.ledger.write("accepted", handle.id, nid, kind, options.get("not_node") or "-")


def _start(port: int, url: str, tries: int = 20) -> None:
    """Bind the distributor on ``port`` (the previous incarnation's may linger a moment)."""
    for attempt in range(tries):
        try:
            JR.start_distributor("127.0.0.1", port, group=GROUP, outbox=url, result_store=url)
            return
        except ReactorError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nemesis.app")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--nodes", required=True, help="comma-separated node names")
    parser.add_argument("--rate", type=float, default=3.0, help="jobs per second")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--settings", default="{}", help="JR.config values, as JSON")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    JR.config.update(json.loads(opts.settings))
    _start(opts.port, opts.redis)
    ledger = LedgerWriter(opts.dir / f"app-{opts.name}.ledger")
    ledger.write("incarnation", os.getpid())
    work = Workload(
        opts.name, opts.nodes.split(","), ledger, f"{opts.seed}:{opts.name}:{os.getpid()}"
    )
    stop_file = opts.dir / "stop-enqueueing"
    while not stopping.is_set():
        if not stop_file.exists():
            work.enqueue_one()
        stopping.wait(work.rng.expovariate(opts.rate))
    return 0  # the interpreter's normal exit drains the distributor


if __name__ == "__main__":
    sys.exit(main())
