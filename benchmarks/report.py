"""The printed report: a header with versions, reactor's figures against their targets, and the
comparison with the peers as ratios."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
from collections.abc import Callable
from typing import Any

from tabulate import tabulate

from benchmarks.harness import Result

Figures = dict[str, dict[str, Any]]


def json_line(result: Result) -> str:
    """One case as one JSON line."""
    return json.dumps(result.as_json(), sort_keys=False)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header(redis_version: str, load_before: float) -> str:
    """Date, machine, load and versions."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"reactor benchmarks, {now}; {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after",
        f"reactor-jobs {_version('reactor-jobs')}, pyzmq {_version('pyzmq')}, msgpack "
        f"{_version('msgpack')}, uvloop {_version('uvloop')}, redis-py {_version('redis')}, "
        f"redis-server {redis_version or 'not started'}",
        f"peers: dramatiq {_version('dramatiq')}, celery {_version('celery')}",
    ]
    return "\n".join(parts)


def _n(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != int(value):
        return f"{value:,.2f}{unit}"
    return f"{int(value):,}{unit}"


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "MISSED")


def reactor_table(by: Figures) -> str:
    """reactor's figures with their targets."""
    rows: list[list[str]] = []
    dramatiq = by.get("dramatiq_drain", {}).get("jobs_per_s")

    def row(
        case: str,
        what: str,
        show: Callable[[dict[str, Any]], str],
        target: str = "",
        check: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        fig = by.get(case)
        if fig is None:
            return
        if fig.get("_failed"):
            rows.append([what, "FAILED: " + str(fig.get("note", ""))[:60], target, "MISSED", "-"])
            return
        verdict = _verdict(check(fig) if check else None)
        once = fig.get("exactly_once")
        rows.append([what, show(fig), target, verdict, "-" if once is None else str(once)])

    def drain_check(f: dict[str, Any]) -> bool:
        ok = bool(f["jobs_per_s"] >= 25_000)
        return ok and (dramatiq is None or f["jobs_per_s"] >= 10 * dramatiq)

    def drain_show(f: dict[str, Any]) -> str:
        text = f"{_n(f['jobs_per_s'])} jobs/s, n={_n(f['n'])}"
        runs = f.get("runs_jobs_per_s", [])
        if len(runs) > 1:
            text += f" (runs {' / '.join(_n(r) for r in runs)})"
        cpu = [f"{k[:-8]} {v}%" for k, v in f.items() if k.endswith("_cpu_pct")]
        if cpu:
            text += f", CPU {', '.join(cpu)}"
        if f.get("storage") == "memory" and dramatiq is None:
            text += " (no Dramatiq figure to compare)"
        return text

    row(
        "drain_memory",
        "drain, memory storage",
        drain_show,
        ">= 25,000/s and >= 10x Dramatiq",
        drain_check,
    )
    row(
        "drain_redis",
        "drain, Redis storage",
        drain_show,
        ">= 10,000/s",
        lambda f: bool(f["jobs_per_s"] >= 10_000),
    )
    row(
        "enqueue",
        "enqueue, 1 thread",
        lambda f: _rate_runs(f, 1),
        ">= 100,000/s",
        lambda f: bool(f["threads_1_per_s"] >= 100_000),
    )
    row("enqueue", "enqueue, 4 threads", lambda f: _rate_runs(f, 4))
    row(
        "enqueue",
        "enqueue, 1 thread, no node connected",
        lambda f: f"{_n(f['threads_1_no_node_per_s'])} jobs/s (jobs wait in the distributor)",
    )
    row(
        "latency",
        "latency enqueue->start p50/p99/max",
        lambda f: _ms(f, "start"),
        "p50 < 1 ms, p99 < 5 ms",
        lambda f: bool(f["start_p50_ms"] < 1 and f["start_p99_ms"] < 5),
    )
    row("latency", "latency enqueue->feedback p50/p99/max", lambda f: _ms(f, "feedback"))
    row(
        "start_latency",
        "enqueue->start p50/p99/max at half the max rate",
        lambda f: f"{_ms(f, 'start')} at {_n(f['rate_per_s'])}/s (max {_n(f['max_jobs_per_s'])}/s)",
        "p99 < 2 ms",
        lambda f: bool(f["start_p99_ms"] < 2),
    )
    row(
        "timers",
        "deferred lateness p50/p99/max",
        lambda f: _ms(f, "late"),
        "p99 < 5 ms",
        lambda f: bool(f["late_p99_ms"] < 5),
    )
    row(
        "memory_node",
        "node RSS per deferred job",
        lambda f: f"{_n(f['node_bytes_per_job'])} B (n={_n(f['n'])})",
        "< 1 KiB",
        lambda f: bool(f["node_bytes_per_job"] < 1024),
    )
    row(
        "memory_node",
        "distributor RSS per job stored on a node",
        lambda f: f"{_n(f['distributor_bytes_per_stored_job'])} B",
    )
    row(
        "memory_distributor",
        "distributor RSS per waiting job",
        lambda f: f"{_n(f['distributor_bytes_per_job'])} B (n={_n(f['n'])})",
    )
    row(
        "instructions",
        "instructions per job (callgrind, both sides)",
        lambda f: f"{_n(f['instructions_per_job'])} (by difference over {_n(f['jobs'])} jobs)",
        "<= 150k",
        lambda f: bool(f["instructions_per_job"] <= 150_000),
    )
    row(
        "idle",
        "idle: one node, 20 distributors, CPU",
        lambda f: f"{f['node_cpu_pct']:.2f} % of a core over {f['node_seconds']:g} s",
        "< 1 %",
        lambda f: bool(f["node_cpu_pct"] < 1),
    )
    row("idle", "idle: 20 x 200 links (simulated), messages and CPU per link", _idle_show)
    row(
        "cpu_bound",
        "CPU-bound jobs (2 ms), --processes 1 / 2",
        _cpu_show,
        ">= 1.6x with 2 processes",
        lambda f: bool(f["speedup"] >= 1.6),
    )
    row("limits", "flow control: drain jobs/s, overhead per job", _limits_show)
    shown = {"drain_memory", "drain_redis", "enqueue", "latency", "timers", "memory_node", "limits"}
    shown |= {"start_latency", "idle"}
    shown |= {"memory_distributor", "cpu_bound", "instructions"}
    for case, fig in by.items():
        if case not in shown and fig.get("_failed") and not case.startswith(("dramatiq", "celery")):
            rows.append([case, "FAILED: " + str(fig.get("note", ""))[:60], "", "MISSED", "-"])
    headers = ["reactor", "figure", "target", "verdict", "exactly once"]
    return str(tabulate(rows, headers=headers, tablefmt="github"))


def _limits_show(f: dict[str, Any]) -> str:
    parts = [f"plain {_n(f['plain_jobs_per_s'])}/s"]
    for key, value in f.items():
        if key.endswith("_overhead_us_per_job"):
            mode = key[: -len("_overhead_us_per_job")]
            parts.append(f"{mode} {_n(f[mode + '_jobs_per_s'])}/s ({value:+.1f} µs)")
    return ", ".join(parts) + f" (n={_n(f['n'])})"


def _idle_show(f: dict[str, Any]) -> str:
    if "sim_links" not in f:
        return "-"
    return (
        f"{_n(f['sim_messages_per_s'])} msg/s for {_n(f['sim_links'])} links "
        f"({f['sim_messages_per_link_s']:g}/link/s), {f['sim_cpu_us_per_link_s']:g} us CPU/link/s"
    )


def _cpu_show(f: dict[str, Any]) -> str:
    one, two = f["runs_processes_1_jobs_per_s"], f["runs_processes_2_jobs_per_s"]
    text = f"{_n(f['processes_1_jobs_per_s'])} / {_n(f['processes_2_jobs_per_s'])} jobs/s"
    text += f", {f['speedup']:.2f}x (n={_n(f['n'])})"
    if len(one) > 1:
        text += f" (runs {' / '.join(_n(r) for r in one)} vs {' / '.join(_n(r) for r in two)})"
    return text


def _rate_runs(f: dict[str, Any], threads: int) -> str:
    text = f"{_n(f[f'threads_{threads}_per_s'])} jobs/s"
    runs = f.get(f"runs_threads_{threads}_per_s", [])
    if len(runs) > 1:
        text += f" (runs {' / '.join(_n(r) for r in runs)})"
    return text


def _ms(f: dict[str, Any], prefix: str) -> str:
    return (
        f"{f[prefix + '_p50_ms']:.2f} / {f[prefix + '_p99_ms']:.2f} / "
        f"{f[prefix + '_max_ms']:.2f} ms"
    )


def peer_table(by: Figures) -> str:
    """reactor against Dramatiq and Celery, with ratios reactor/peer."""
    peers = [
        p
        for p in ("dramatiq", "celery")
        if f"{p}_drain" in by or f"{p}_latency" in by or f"{p}_cpu_bound" in by
    ]
    if not peers:
        return ""

    def get(case: str, key: str) -> float | None:
        fig = by.get(case, {})
        value = fig.get(key)
        return None if fig.get("_failed") or value is None else float(value)

    metrics = [
        # (label, reactor case/key, peer case suffix/key, higher is better)
        ("drain jobs/s", ("drain_memory", "jobs_per_s"), ("drain", "jobs_per_s"), True),
        ("drain jobs/s, Redis", ("drain_redis", "jobs_per_s"), ("drain", "jobs_per_s"), True),
        ("enqueue jobs/s", ("enqueue", "threads_1_per_s"), ("drain", "enqueue_per_s"), True),
        ("start latency p50 ms", ("latency", "start_p50_ms"), ("latency", "start_p50_ms"), False),
        ("start latency p99 ms", ("latency", "start_p99_ms"), ("latency", "start_p99_ms"), False),
        ("start latency max ms", ("latency", "start_max_ms"), ("latency", "start_max_ms"), False),
        (
            "CPU-bound jobs/s, 2 processes",
            ("cpu_bound", "processes_2_pace_per_s"), ("cpu_bound", "jobs_per_s"), True,
        ),
    ]  # fmt: skip
    rows = []
    for label, (rcase, rkey), (psuffix, pkey), higher in metrics:
        mine = get(rcase, rkey)
        theirs = [get(f"{p}_{psuffix}", pkey) for p in peers]
        if mine is None and not any(theirs):
            continue  # a case this run left out
        row = [label, _fmt(mine)] + [_fmt(t) for t in theirs]
        for t in theirs:
            if mine is None or t is None or t == 0 or mine == 0:
                row.append("-")
            else:
                ratio = mine / t if higher else t / mine  # > 1: reactor is better
                if ratio >= 1:
                    row.append(f"{ratio:,.1f}x {'faster' if higher else 'lower'}")
                else:
                    row.append(f"{1 / ratio:,.1f}x {'slower' if higher else 'higher'}")
        rows.append(row)
    headers = ["metric", "reactor", *peers, *(f"reactor vs {p}" for p in peers)]
    return str(tabulate(rows, headers=headers, tablefmt="github"))


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
