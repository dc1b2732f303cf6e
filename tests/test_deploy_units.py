"""The Redis-free parts of discovery, the outbox and the result store."""

from __future__ import annotations

import time

import pytest

from reactor import JobCancelledError, JobFailed
from reactor.cli import build_parser
from reactor.core.jobstate import JobState
from reactor.distributor.outbox import decode as decode_entry
from reactor.distributor.outbox import encode as encode_entry
from reactor.storage.discovery import Announcement, advertised_address, json_safe
from reactor.storage.results import decode as decode_result
from reactor.storage.results import encode as encode_result
from reactor.wire import protocol as P
from reactor.wire.layout import JOB_DELAY


def test_a_node_needs_distributors_or_discovery() -> None:
    ns = build_parser().parse_args(["node", "--name", "x"])
    assert ns.func(ns) == 2
    ns = build_parser().parse_args(["node", "--name", "x", "--discover", "redis://h:1/0"])
    assert ns.discover == "redis://h:1/0"


def test_announcements_round_trip_and_snapshots_become_json_safe() -> None:
    snap = json_safe({"nodes": [{"jobs": ("a", "b"), 1: b"\x01"}], "obj": object})
    assert snap == {"nodes": [{"jobs": ["a", "b"], "1": "01"}], "obj": str(object)}
    item = Announcement("web", "s1", "10.0.0.1:5000", 42, "host", 12.5, {"nodes": []})
    assert Announcement.from_json(item.to_json()) == item
    with pytest.raises(ValueError):
        Announcement.from_json('{"group": "web"}')
    assert advertised_address("127.0.0.1", 5) == "127.0.0.1:5"
    assert not advertised_address("0.0.0.0", 5).startswith("0.0.0.0")


def test_outbox_entries_keep_routing_and_turn_delays_into_instants() -> None:
    wire = [P.JOB, "j1", 0, "name", b"\x80", 30.0, 0.0, None, False, 0, time.time()]
    job = JobState.from_wire(
        wire, None, node="n", not_node="m", due=time.monotonic() + 30, deferred=True
    )
    raw = encode_entry(job)
    back = decode_entry(raw, lambda job_id, name: (job_id, name))
    assert (back.id, back.name, back.handle) == ("j1", "name", ("j1", "name"))
    assert (back.node, back.not_node, back.deferred, back.periodic) == ("n", "m", True, False)
    assert (
        29.0 < back.message(time.monotonic())[JOB_DELAY] <= 30.0
        and back.due > time.monotonic() + 29
    )
    with pytest.raises(ValueError):
        decode_entry(b"\x01", lambda job_id, name: None)


def test_stored_results_decode_to_args_or_the_error() -> None:
    ok = P.Feedback("j", 1, 1, P.SUCCESS, True, P.pack_args({"x": 1}, max_size=1000), None)
    assert decode_result("j", encode_result("echo", ok)) == {"x": 1}
    error = ("NameError", "name 'y' is not defined", "Traceback ...")
    bad = P.Feedback("j", 1, 1, P.FAILURE, True, P.pack_args({}, max_size=1000), error)
    with pytest.raises(JobFailed) as failed:
        decode_result("j", encode_result("echo", bad))
    assert (failed.value.type_name, failed.value.traceback) == ("NameError", "Traceback ...")
    with pytest.raises(JobCancelledError):
        decode_result("j", encode_result("echo", None))
