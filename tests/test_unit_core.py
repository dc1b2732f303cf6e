"""Timers, routing, config and the loader on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reactor import Config, ConfigError
from reactor.core.jobstate import JobState
from reactor.core.routing import NodeState, Presence, Router
from reactor.core.schedule import TimerHeap
from reactor.jobs.loader import load_jobs


def test_timer_heap_pops_in_due_order_and_honours_cancel() -> None:
    timers: TimerHeap[str] = TimerHeap()
    timers.add(10.15, "c")
    timers.add(10.05, "a")
    token = timers.add(10.08, "cancelled")
    timers.add(10.10, "b")
    assert timers.cancel(token) and not timers.cancel(token)
    assert len(timers) == 3
    assert timers.earliest() == 10.05
    assert timers.pop_due(10.0) == []
    assert timers.pop_due(10.12) == ["a", "b"]
    assert timers.earliest() == 10.15 and len(timers) == 1
    assert timers.pop_due(11.0) == ["c"] and timers.earliest() is None


def test_timer_heap_forgets_cancelled_items_before_they_are_due() -> None:
    """Cancelled entries are skipped, and once they are most of the heap it is rebuilt, so a
    cancelled item is not held until its due time."""
    timers: TimerHeap[int] = TimerHeap()
    tokens = [timers.add(100.0 + k, k) for k in range(300)]
    for k in range(0, 300, 3):
        assert timers.cancel(tokens[k])
    assert len(timers) == 200 and sorted(timers.items()) == [k for k in range(300) if k % 3]
    for k in range(300):
        if k % 3 == 1:
            timers.cancel(tokens[k])
    assert len(timers) == 100 and sorted(timers.items()) == [k for k in range(300) if k % 3 == 2]
    assert timers.earliest() == 102.0
    assert timers.pop_due(1000.0) == [k for k in range(300) if k % 3 == 2]
    assert len(timers) == 0 and timers.earliest() is None


def _node(name: str, load: int = 0, capacity: int = 10) -> NodeState:
    n = NodeState(name, name.encode())
    n.presence, n.load, n.capacity, n.job_names = Presence.UP, load, capacity, frozenset({"j"})
    return n


def _job(node: str | None = None, not_node: str | None = None) -> JobState:
    job = JobState("id", "j", b"\x80", None, 0.0)
    job.route(node, not_node, 0, periodic=False)
    return job


def test_router_prefers_least_loaded_and_round_robins_ties() -> None:
    router = Router(strict=lambda: False)
    router.nodes = {"a": _node("a"), "b": _node("b")}
    picks = []
    for _ in range(4):
        node = router.pick(_job())
        assert node is not None
        picks.append(node.name)
    assert sorted(picks) == ["a", "a", "b", "b"]
    router.nodes["a"].load = 5
    assert [router.pick(_job()).name for _ in range(3)] == ["b", "b", "b"]  # type: ignore[union-attr]


def test_router_never_violates_not_node_and_honours_strict() -> None:
    strict = {"on": False}
    router = Router(strict=lambda: strict["on"])
    router.nodes = {"a": _node("a"), "b": _node("b", load=10)}  # b is full
    assert router.pick(_job(not_node="a")) is None
    assert router.pick(_job(node="b")).name == "a"  # type: ignore[union-attr]
    strict["on"] = True
    assert router.pick(_job(node="b")) is None
    assert router.pick(_job(node="missing")) is None


def test_router_parks_and_drains_by_group() -> None:
    router = Router(strict=lambda: True)
    router.nodes = {"a": _node("a", capacity=2)}
    blocked = _job(node="absent")
    free1, free2 = _job(), _job()
    for j in (blocked, free1, free2):
        router.park(j)
    placed = []
    for job, node in router.drain():
        node.load += 1
        placed.append(job)
    assert placed == [free1, free2] and router.waiting == 1
    assert router.unpark(blocked) and router.waiting == 0


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    config = Config()
    assert config["max_attempt"] == 10 and config["retry_multiplier"] == 5
    with pytest.raises(KeyError, match="valid keys: .*max_attempt"):
        config["max_attempts"] = 3
    with pytest.raises(ConfigError, match="whole number"):
        config["max_attempt"] = 0
    with pytest.raises(ConfigError, match="True or False"):
        config["remove_done_jobs"] = "yes"
    with pytest.raises(KeyError):
        _ = config["nope"]
    config["retry_multiplier"] = 0.5
    assert config.copy()["retry_multiplier"] == 0.5


def test_loader_builds_a_fresh_registry_recursively(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text(
        "from reactor import job\n@job('one')\ndef one(args): args['one'] = 1\n"
    )
    (tmp_path / "sub" / "b.py").write_text(
        "from reactor import job_callback\n"
        "@job_callback('one', 'cb')\ndef cb(args): args['cb'] = 1\n"
    )
    first = load_jobs(tmp_path)
    second = load_jobs(tmp_path)
    assert first.names() == ["one"] and first is not second
    entry = first.get("one")
    assert entry is not None and len(entry.callbacks) == 1
    args: dict[str, Any] = {}
    for step in entry.steps:
        step(args)
    assert args == {"one": 1, "cb": 1}


def test_loader_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_jobs(tmp_path / "missing")
    (tmp_path / "bad.py").write_text("raise RuntimeError('broken file')\n")
    with pytest.raises(ConfigError, match="bad.py failed to load: RuntimeError: broken file"):
        load_jobs(tmp_path)
    (tmp_path / "bad.py").write_text(
        "from reactor import job_errback\n@job_errback('ghost')\ndef e(args): pass\n"
    )
    with pytest.raises(ConfigError, match="before any @job"):
        load_jobs(tmp_path)
