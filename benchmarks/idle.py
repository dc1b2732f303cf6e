"""The ``idle`` case: what idle links cost, at scale and on one real node.

Two measures (issue 19: "20 distributors x 200 nodes: heartbeat messages per second and CPU per
link; a node linked to 20 idle distributors uses < 1 % of a core"):

- **At scale, simulated**: the deterministic simulation (``tests/sim``) runs the real
  distributor and node cores, 20 x 200 with every node linked to every distributor (4,000
  links), on a fake clock with the default heartbeat settings and no jobs. Every message either
  side sends is counted by kind over ``SIM_SECONDS`` of simulated time, once the links are up;
  the process CPU time that simulated interval took, over links and simulated seconds, is the
  cores' CPU per link (an upper bound: it includes the simulation's own codec round trip per
  message and its event heap, but no sockets or system calls).
- **One real node**: a ``reactor node`` process linked to 20 idle distributors (each on its own
  loop thread in this process), its CPU use over ``seconds`` of wall time.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

from benchmarks.harness import (
    JOBS_DIR,
    App,
    Options,
    Result,
    Scratch,
    app_running,
    cpu_seconds,
    note,
    stop_node,
)
from benchmarks.services import Services
from reactor.config import DEFAULTS
from reactor.testing.support import NodeProcess

DISTRIBUTORS, NODES = 20, 200
#: Simulated seconds counted (after SETTLE seconds for every link to come up).
SIM_SECONDS, SETTLE = 60.0, 10.0
#: The node's CPU target, % of one core.
TARGET_CPU_PCT = 1.0


def _kind(message: Any) -> str:
    """A message's kind: its class name, or the wire list's tag."""
    if isinstance(message, list):
        return f"wire-{message[0]}"
    return type(message).__name__


def simulated(
    seconds: float, distributors: int = DISTRIBUTORS, nodes: int = NODES
) -> dict[str, Any]:
    """Messages per second by kind and direction, and CPU per link, of an idle simulated cluster.

    Raises:
        ImportError: the simulation (``tests/sim``) is not importable (not a checkout).
    """
    from tests.sim import world as W

    # The simulation's short test intervals replaced by the shipped defaults.
    W.INTERVAL = float(DEFAULTS["heartbeat_interval"])
    W.TIMEOUT = float(DEFAULTS["heartbeat_timeout"])
    W.LOST_AFTER = float(DEFAULTS["node_lost_after"])
    counts: collections.Counter[str] = collections.Counter()
    with _counting(W, counts):
        world = W.World(
            0,
            distributors=distributors,
            nodes=[(f"n{i}", False, 8) for i in range(nodes)],
            faults=W.Faults(),
        )
        world.clock.run_until(SETTLE)
        up = sum(
            1
            for d in world.distributors
            for n in d.core.router.nodes.values()
            if n.presence.name == "UP"
        )
        counts.clear()
        began = time.process_time()
        world.clock.run_until(SETTLE + seconds)
        cpu = time.process_time() - began
    links = distributors * nodes
    total = sum(counts.values())
    return {
        "sim_links": links,
        "sim_links_up": up,
        "sim_seconds": seconds,
        "sim_messages_per_s": round(total / seconds, 1),
        "sim_messages_per_link_s": round(total / seconds / links, 3),
        "sim_by_kind_per_s": {k: round(v / seconds, 1) for k, v in sorted(counts.items())},
        "sim_cpu_us_per_link_s": round(cpu / seconds / links * 1e6, 1),
        "sim_cpu_pct_per_node": round(100 * cpu / seconds / nodes, 3),
    }


@contextlib.contextmanager
def _counting(W: Any, counts: collections.Counter[str]) -> Iterator[None]:
    """Count every message either side of the simulation sends, by side and kind."""
    saved = (W.SimDistributor.send, W.Process.send)

    def counted(side: str, send: Callable[[Any, Any, Any], None]) -> Callable[..., None]:
        def wrapper(port: Any, to: Any, message: Any) -> None:
            counts[f"{side}:{_kind(message)}"] += 1
            send(port, to, message)

        return wrapper

    W.SimDistributor.send = counted("d->n", saved[0])
    W.Process.send = counted("n->d", saved[1])
    try:
        yield
    finally:
        W.SimDistributor.send, W.Process.send = saved


def real(seconds: float, distributors: int = DISTRIBUTORS) -> dict[str, Any]:
    """CPU use of one node process linked to ``distributors`` idle distributors."""
    with ExitStack() as stack:
        apps: list[App] = [stack.enter_context(app_running()) for _ in range(distributors)]
        scratch = stack.enter_context(Scratch())
        proc = NodeProcess(
            "bench-idle",
            [app.address for app in apps],
            jobs=JOBS_DIR,
            storage="memory",
            settings={"log_job_processing": "false"},
            log_path=scratch.path("node-idle", ".log"),
        )
        scratch.callback(lambda: stop_node(proc))
        for app in apps:
            app.wait_node("bench-idle")
        time.sleep(2.0)  # hellos and first syncs done
        cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()
        time.sleep(seconds)
        cpu = cpu_seconds(proc.pid) - cpu0
        wall = time.perf_counter() - wall0
    return {
        "node_distributors": distributors,
        "node_seconds": round(wall, 1),
        "node_cpu_pct": round(100 * cpu / wall, 3),
    }


def idle(opts: Options, services: Services) -> Result:
    """Both measures; quick runs simulate 10 s and watch the real node for 5 s."""
    figures: dict[str, Any] = {}
    note_text = ""
    try:
        figures.update(simulated(10.0 if opts.quick else SIM_SECONDS))
    except ImportError as exc:
        note_text = f"simulation skipped ({exc}): run from a checkout"
    note(f"  idle: one node, {DISTRIBUTORS} distributors")
    figures.update(real(5.0 if opts.quick else 30.0))
    figures["node_under_1pct"] = figures["node_cpu_pct"] < TARGET_CPU_PCT
    ok = figures.get("sim_links_up", DISTRIBUTORS * NODES) == DISTRIBUTORS * NODES
    return Result("idle", ok, figures, note_text)
