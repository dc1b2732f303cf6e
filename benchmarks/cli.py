"""``python -m benchmarks`` (and ``reactor bench``): pick the cases, run them, print the report."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks import (
    cpu_bound,
    idle,
    instructions,
    limits_overhead,
    peer_cases,
    reactor_cases,
    start_latency,
)
from benchmarks.harness import Options, Result, note
from benchmarks.profiling import py_spy
from benchmarks.report import Figures, header, json_line, peer_table, reactor_table
from benchmarks.services import Services, redis_available

CaseFn = Callable[[Options, Services], Result | list[Result]]

#: Every case in running order: name -> (function, needs Redis, is a peer).
CASES: dict[str, tuple[CaseFn, bool, bool]] = {
    "drain_memory": (lambda o, s: reactor_cases.drain(o, s, redis=False), False, False),
    "drain_redis": (lambda o, s: reactor_cases.drain(o, s, redis=True), True, False),
    "enqueue": (reactor_cases.enqueue_rate, False, False),
    "latency": (reactor_cases.latency, False, False),
    "start_latency": (start_latency.start_latency, False, False),
    "timers": (reactor_cases.timers, False, False),
    "memory": (reactor_cases.memory, False, False),
    "limits": (limits_overhead.limits, False, False),  # its Redis modes skip themselves
    "instructions": (instructions.instructions, False, False),
    "idle": (idle.idle, False, False),
    "cpu_bound": (cpu_bound.cpu_bound, False, False),
    "cpu_bound_peers": (cpu_bound.peers, True, False),  # skips itself under --skip-peers
    "dramatiq": (lambda o, s: peer_cases.run_peer("dramatiq", o, s), True, True),
    "celery": (lambda o, s: peer_cases.run_peer("celery", o, s), True, True),
}
GROUPS = {
    "drain": ("drain_memory", "drain_redis"),
    "peers": ("dramatiq", "celery", "cpu_bound_peers"),
    "cpu": ("cpu_bound", "cpu_bound_peers"),
    "reactor": (
        "drain_memory",
        "drain_redis",
        "enqueue",
        "latency",
        "start_latency",
        "timers",
        "memory",
        "limits",
        "idle",
        "cpu_bound",
    ),
}
#: Cases that run only when named with --only (callgrind takes minutes).
OPT_IN = frozenset({"instructions"})


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="reactor's benchmark suite on loopback, with Dramatiq and Celery for "
        "comparison. Prints one JSON line per case, then a table.",
    )
    p.add_argument(
        "--n", type=int, help="jobs in the drain and enqueue cases (100,000; quick 2,000)"
    )
    p.add_argument("--quick", action="store_true", help="small sizes for a fast run")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="CASE",
        help=f"run only these (repeatable, or comma-separated): {', '.join([*CASES, *GROUPS])}",
    )
    p.add_argument("--skip-peers", action="store_true", help="do not run Dramatiq and Celery")
    p.add_argument("--skip-redis", action="store_true", help="do not run cases that need Redis")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the node and the application with py-spy during the drain cases; "
        "raw stacks and summaries go to DIR",
    )
    p.add_argument("--peer-n", type=int, help="jobs in the peers' drain (min(n, 20,000))")
    p.add_argument("--latency-n", type=int, help="jobs in the latency cases (2,000; quick 400)")
    p.add_argument(
        "--repeat", type=int, help="rounds of the drain and enqueue cases, median kept (3; quick 1)"
    )
    p.add_argument("--latency-rate", type=float, default=200.0, help="jobs/s in latency cases")
    p.add_argument("--timer-n", type=int, help="deferred jobs in the timer case (1,000; quick 300)")
    p.add_argument(
        "--memory-n", type=int, help="jobs held in the memory cases (100,000; quick 10,000)"
    )
    return p


def options(ns: argparse.Namespace) -> Options:
    """Resolve the defaults that depend on ``--quick`` and ``--n``.

    Raises:
        SystemExit: an unknown case name or a non-positive size.
    """
    quick = bool(ns.quick)
    n = ns.n or (2_000 if quick else 100_000)
    only: set[str] = set()
    for item in ns.only:
        for name in filter(None, (part.strip() for part in item.split(","))):
            if name in GROUPS:
                only.update(GROUPS[name])
            elif name in CASES:
                only.add(name)
            else:
                valid = ", ".join([*CASES, *GROUPS])
                raise SystemExit(f"unknown case {name!r}; valid cases: {valid}")
    opts = Options(
        n=n,
        peer_n=ns.peer_n or min(n, 2_000 if quick else 20_000),
        latency_n=ns.latency_n or (400 if quick else 2_000),
        latency_rate=ns.latency_rate,
        timer_n=ns.timer_n or (300 if quick else 1_000),
        memory_n=ns.memory_n or (10_000 if quick else 100_000),
        repeat=ns.repeat or (1 if quick else 3),
        quick=quick,
        only=frozenset(only),
        skip_peers=bool(ns.skip_peers),
        skip_redis=bool(ns.skip_redis),
        profile=ns.profile,
    )
    sizes = (opts.n, opts.peer_n, opts.latency_n, opts.timer_n, opts.memory_n)
    if min(sizes) < 2 or opts.latency_rate <= 0 or opts.repeat < 1:
        raise SystemExit("sizes must be at least 2, repeat at least 1, the latency rate positive")
    return opts


def check_profiler(opts: Options) -> None:
    """Fail early when --profile is given without py-spy."""
    if opts.profile is not None and py_spy() is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")


def selected(opts: Options) -> list[str]:
    """The cases to run, in order, printing why any is left out."""
    names = [name for name in CASES if name in opts.only or (not opts.only and name not in OPT_IN)]
    redis_missing = "--skip-redis" if opts.skip_redis else redis_available()
    out = []
    for name in names:
        _, needs_redis, is_peer = CASES[name]
        if is_peer and opts.skip_peers:
            continue
        if is_peer:
            missing = peer_cases.PEERS[name].available()
            if missing:
                print(f"note: skipping {name}: {missing}", flush=True)
                continue
        if needs_redis and redis_missing:
            print(f"note: skipping {name}: {redis_missing}", flush=True)
            continue
        out.append(name)
    return out


def run_case(name: str, opts: Options, services: Services) -> list[Result]:
    """Run one case; a failure becomes a failed Result so the rest still run."""
    fn = CASES[name][0]
    began = time.monotonic()
    note(f"running {name} ...")
    try:
        got = fn(opts, services)
        results = got if isinstance(got, list) else [got]
    except Exception as exc:
        note(traceback.format_exc())
        results = [Result(name, False, {}, f"{type(exc).__name__}: {exc}")]
    note(f"  {name} took {time.monotonic() - began:.1f}s")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected cases; 0 when every one finished with its checks passing."""
    opts = options(build_parser().parse_args(argv))
    check_profiler(opts)
    names = selected(opts)
    services = Services()
    results: list[Result] = []
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        for name in names:
            for result in run_case(name, opts, services):
                results.append(result)
                print(json_line(result), flush=True)
        redis_version = services.redis_version()
    finally:
        services.close()
    by: Figures = {}
    for r in results:
        by[r.case] = {**r.figures, "note": r.note, "_failed": not r.ok}
    print()
    print(header(redis_version, load_before))
    print(
        f"sizes: n={opts.n:,}, peers n={opts.peer_n:,}, latency {opts.latency_n:,} jobs at "
        f"{opts.latency_rate:g}/s, timers {opts.timer_n:,} over {opts.timer_spread:g}s, "
        f"memory {opts.memory_n:,} jobs; drain and enqueue: median of {opts.repeat} round(s); "
        f"whole run {time.monotonic() - began:.0f}s"
    )
    print()
    print(reactor_table(by))
    peers = peer_table(by)
    if peers:
        print()
        print(
            "peers: drain = pre-filled queue, first to last job start (start-up not counted); "
            "reactor's drain includes enqueueing"
        )
        print(peers)
    for r in results:
        if r.profile:
            print()
            print(f"profile of {r.case} (py-spy, % of samples; also in {opts.profile}):")
            print(r.profile)
    sys.stdout.flush()
    return 0 if results and all(r.ok for r in results) else 1
