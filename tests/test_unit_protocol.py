"""The wire codec and args encoding on their own."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.errors import MessageTooLargeError, ProtocolError
from reactor.wire import protocol as P


def test_round_trip_of_every_message_kind() -> None:
    codec = P.Codec()
    messages: list[P.Message] = [
        P.Hello(2, "n", "s", 10, ["a", "b"], True, False, "host h pid 1", 12.5),
        P.Welcome(2, "127.0.0.1:5000", "sess", 1.0, 12.5, "node-sess"),
        P.Job("id1", 1, "job", b"\x80", 0.0, 0.0, None, False, 0, 1.5),
        P.Job("id2", 3, "job", b"\x81\xa1a\x01", 12.25, 0.0, 0.5, True, 2, 1.5),
        P.Stored([["a", 1], ["b", 2]]),
        P.Rejected([["a", 1]], "stopping"),
        P.Parked([["a", 1, 2]]),
        P.HandBack([["a", 1, 0, 2.5]], "stopping"),
        P.HandBackAck([["a", 1]]),
        P.Cancel([["a", 1]]),
        P.Revoke([["a", 1]]),
        P.Feedback("id", 2, 3, P.FAILURE, True, b"\x80", ("NameError", "x", "tb")),
        P.Feedback("id", 1, 1, P.SUCCESS, False, b"\x80", None),
        P.FeedbackAck([["a", 1, 1], ["b", 1, 2]]),
        P.Heartbeat("s", False, 3.5, 1024),
        P.Sync(1, [["a", 1]], True),
        P.SyncReply(1, [["a", 1]], False),
        P.Reset("why"),
        P.Refused("s", "NodeNameTaken", "held by host h pid 1"),
        P.Bye("s"),
    ]
    decoded, errors = codec.decode(codec.encode(messages))
    assert errors == []
    assert decoded == messages
    assert [type(m) for m in decoded] == [type(m) for m in messages]


def test_bad_messages_are_rejected_one_by_one() -> None:
    codec = P.Codec()
    frame = msgpack.packb(
        [
            [P.STORED, [["ok", 1]]],
            [999],
            "not a list",
            [P.STORED, "not a list of ids"],
            [P.STORED, [["no-asg"]]],
            [P.JOB, "id", "name"],
            [P.HEARTBEAT, "s", True, 1.0, 8],
        ]
    )
    decoded, errors = codec.decode(frame)
    assert decoded == [P.Stored([["ok", 1]]), P.Heartbeat("s", True, 1.0, 8)]
    assert len(errors) == 5
    assert any("unknown message kind 999" in str(e) for e in errors)
    assert any("Job takes 10 to 18 fields" in str(e) for e in errors)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\xc1",
        msgpack.packb({"a": 1}),
        msgpack.packb(5),
        msgpack.ExtType(1, b"x") and msgpack.packb([msgpack.ExtType(1, b"xx")]),
        b"\xdd\xff\xff\xff\xff",  # an array header announcing 4 billion items
    ],
)
def test_undecodable_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        P.Codec().decode(frame)


def test_oversized_frame_is_refused_before_decoding() -> None:
    codec = P.Codec(max_message_size=1000)
    with pytest.raises(ProtocolError, match="exceeds the 1000-byte limit"):
        codec.decode(b"\x91" + msgpack.packb("x" * 2000))


def test_pack_args_names_the_offending_key_and_checks_size() -> None:
    assert P.unpack_args(P.pack_args({"a": 1.5, "b": [1, "x"], "c": None})) == {
        "a": 1.5,
        "b": [1, "x"],
        "c": None,
    }
    with pytest.raises(TypeError, match=r"args\['bad'\]"):
        P.pack_args({"good": 1, "bad": object()})
    with pytest.raises(TypeError, match="must be a dict"):
        P.pack_args([1, 2])
    with pytest.raises(MessageTooLargeError, match="over the 100-byte"):
        P.pack_args({"x": "y" * 200}, max_size=100)


def test_result_args_carry_what_msgpack_cannot_as_text() -> None:
    packed = P.pack_result_args({"err": ValueError("v"), "s": {1}, "o": object})
    args = P.unpack_args(packed)
    assert args["err"] == "ValueError: v"
    assert args["s"] == [1]
    assert args["o"].startswith("<class")


def test_ids_and_names_with_control_characters_are_refused() -> None:
    codec = P.Codec()
    forged = "j1\n2026-11-23 INFO reactor.node.driver: forged line"
    frame = msgpack.packb(
        [
            [P.STORED, [[forged, 1]]],
            [P.JOB, forged, 1, "name", b"\x80", 0.0, 0.0, None, False, 0, 0.0],
            [P.HELLO, 2, "node\r", "s", 1, [], True, False, "", 0.0],
            [P.STORED, [["fine-id", 1]]],
        ]
    )
    decoded, errors = codec.decode(frame)
    assert decoded == [P.Stored([["fine-id", 1]])]
    assert len(errors) == 3


def _general_path(item: list[Any]) -> Any:
    """decode_message without its fast path: the schema's own verdict."""
    try:
        return P.check_message(item)
    except ProtocolError as exc:
        return type(exc)


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 2**31 + 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.sampled_from(["j\nforged", "x" * 129, "n" * 257]),
    st.lists(st.text(max_size=2), max_size=3),
)


_VALID = {
    "job": [P.JOB, "id", 1, "job", b"\x80", 0.5, 0.0, None, False, 0, 1.5],
    "job+options": [
        P.JOB,
        "id",
        1,
        "job",
        b"\x80",
        0.5,
        0.0,
        None,
        False,
        0,
        1.5,
        30.0,
        3,
        "*/5 * * * *",
        "Europe/Paris",
        -7,
    ],
    "feedback": [P.FEEDBACK, "id", 1, 2, P.SUCCESS, True, b"\x80", None],
}


@settings(max_examples=600, deadline=None)
@given(
    kind=st.sampled_from(sorted(_VALID)),
    values=st.lists(_values, min_size=6, max_size=16),
    seed=st.lists(st.sampled_from([0, 1, 2]), min_size=16, max_size=16),
    cut=st.integers(0, 5),
)
def test_fast_decoding_agrees_with_the_schema(
    kind: str, values: list[Any], seed: list[int], cut: int
) -> None:
    # Start from a valid message and replace some fields, so both valid and invalid ones come up.
    item = list(_VALID[kind])
    if kind == "job+options":
        item = item[: len(item) - cut]  # the options are cut after the last non-default one
    for i, choice in enumerate(seed[1 : len(item)], start=1):
        if choice == 2 and i - 1 < len(values):
            item[i] = values[i - 1]
    try:
        fast: Any = P.decode_message(list(item))
    except ProtocolError as exc:
        fast = type(exc)
    assert fast == _general_path(list(item))


def test_job_options_travel_only_when_set() -> None:
    codec = P.Codec()
    plain = P.Job("a", 1, "job", b"\x80", 0.0, 0.0, None, False, 0, 1.5)
    timed = plain._replace(timeout=2.5)
    cron = plain._replace(cron="30 2 * * *", tz="Europe/Paris")
    urgent = plain._replace(priority=9)
    assert P.job_wire(plain) == [P.JOB, *plain[:10]]  # a plain job is no longer than before
    assert P.job_wire(timed) == [P.JOB, *plain[:10], 2.5]
    assert P.job_wire(urgent)[-5:] == [None, None, None, None, 9]
    assert P.job_options_wire(None, None, None, None, 0) == []
    assert P.job_options_wire(None, 4, None, None, 0) == [None, 4]
    assert len(codec.encode([plain])) < len(codec.encode([timed]))
    decoded, errors = codec.decode(codec.encode([plain, timed, cron, urgent]))
    assert errors == []
    assert decoded == [plain, timed, cron, urgent]
    assert decoded[2].tz == "Europe/Paris" and decoded[3].priority == 9


def test_wire_list_positions_follow_the_messages_fields() -> None:
    """layout.py's positions and builders agree with the NamedTuples the decoder builds."""
    for field, position in [
        ("id", P.JOB_ID),
        ("asg", P.JOB_ASG),
        ("name", P.JOB_NAME),
        ("args", P.JOB_ARGS),
        ("delay", P.JOB_DELAY),
        ("run_at", P.JOB_RUN_AT),
        ("period", P.JOB_PERIOD),
        ("defer", P.JOB_DEFER),
        ("attempt", P.JOB_ATTEMPT),
        ("enqueued_at", P.JOB_ENQUEUED_AT),
        ("timeout", P.JOB_OPTIONS),
    ]:
        assert P.Job._fields.index(field) + 1 == position
    assert P.JOB_BASE_LEN == P.JOB_OPTIONS == len(P.Job._fields) - 8 + 1
    assert len(P.Job._fields) + 1 == P.JOB_FULL_LEN
    for field, position in [
        ("id", P.FEEDBACK_ID),
        ("asg", P.FEEDBACK_ASG),
        ("seq", P.FEEDBACK_SEQ),
        ("outcome", P.FEEDBACK_OUTCOME),
        ("final", P.FEEDBACK_FINAL),
        ("args", P.FEEDBACK_ARGS),
        ("error", P.FEEDBACK_ERROR),
    ]:
        assert P.Feedback._fields.index(field) + 1 == position
    assert len(P.Feedback._fields) + 1 == P.FEEDBACK_LEN
    error = ("ValueError", "bad", "tb")
    feedback = P.Feedback("j", 2, 3, P.FAILURE, True, b"\x80", error)
    assert P.feedback_wire(*feedback) == [P.FEEDBACK, *feedback]
    assert P.decode_message(P.feedback_wire(*feedback._replace(error=None))) == feedback._replace(
        error=None
    )
    options = P.job_options_wire(None, 3, None, None, 7)
    wire = P.new_job_wire("j", "name", b"\x80", 1.5, 0.0, None, True, 9.0, options)
    job = P.Job("j", 0, "name", b"\x80", 1.5, 0.0, None, True, 0, 9.0, max_attempt=3, priority=7)
    assert wire == P.job_wire(job)
    assert P.decode_message(wire) == job
    plain = P.new_job_wire("j", "name", b"\x80", 0.0, 0.0, None, False, 9.0, [])
    assert len(plain) == P.JOB_BASE_LEN


def test_tags_and_trace_travel_as_the_last_options_and_only_when_set() -> None:
    trace = ["traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
    options = P.job_options_wire(None, None, None, None, 0, ["billing", "eu"], trace)
    assert options == [None, None, None, None, 0, ["billing", "eu"], trace]
    wire = P.new_job_wire("j", "name", b"\x80", 0.0, 0.0, None, False, 9.0, options)
    assert len(wire) == P.JOB_FULL_LEN - 1  # the limits, the last option, are not set
    decoded, errors = P.Codec().decode(P.Codec().encode([wire]))
    assert errors == []
    assert decoded[0].tags == ["billing", "eu"] and decoded[0].trace == trace
    tagged = P.job_options_wire(None, None, None, None, 0, ["t"], None)
    assert tagged == [None, None, None, None, 0, ["t"]]
    assert P.job_options_wire(None, None, None, None, 0, None, None) == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ([0.0], "timeout"),
        ([-1.0], "timeout"),
        ([float("inf")], "timeout"),
        ([None, 0], "max_attempt"),
        ([None, 2**31], "max_attempt"),
        ([None, True], "max_attempt"),
        ([None, None, ""], "cron"),
        ([None, None, "* * * * *\n"], "cron"),
        ([None, None, "*" * 300], "cron"),
        ([None, None, "* * * * *", 3], "tz"),
        ([None, None, None, None, 2**31], "priority"),
        ([None, None, None, None, 1.0], "priority"),
        ([None, None, None, None, 0, "billing"], "tags"),
        ([None, None, None, None, 0, []], "tags"),
        ([None, None, None, None, 0, ["x" * 65]], "tags"),
        ([None, None, None, None, 0, [f"t{i}" for i in range(17)]], "tags"),
        ([None, None, None, None, 0, ["ok", 3]], "tags"),
        ([None, None, None, None, 0, None, ["traceparent", 1]], "trace"),
        ([None, None, None, None, 0, None, ["traceparent"]], "trace"),
        ([None, None, None, None, 0, None, []], "trace"),
        ([None, None, None, None, 0, None, None, "x"], "limits"),
        ([None, None, None, None, 0, None, None, ["k", 0, None, 0, 0]], "limits"),
        ([None, None, None, None, 0, None, None, ["k", 2, None, 0, 5, None]], "limits"),
        ([None, None, None, None, 0, None, None, ["", 2, None, 0, 0, None]], "limits"),
        ([None, None, None, None, 0, None, None, None, "extra"], None),
    ],
)
def test_bad_job_options_are_refused_by_name(options: list[Any], field: str | None) -> None:
    item = [P.JOB, "id", 1, "job", b"\x80", 0.0, 0.0, None, False, 0, 1.5, *options]
    decoded, errors = P.Codec().decode(msgpack.packb([item]))
    assert decoded == []
    assert len(errors) == 1
    assert (f"Job.{field} " if field else "takes 10 to 18 fields") in str(errors[0])
