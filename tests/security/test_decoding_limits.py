"""Bounded decoding: msgpack bombs at the envelope and in job args; the limits pack_args keeps."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor.errors import MessageTooLargeError, ProtocolError
from reactor.wire import protocol as P

MiB = 1024 * 1024


def nested(depth: int) -> dict[str, Any]:
    """A dict nested ``depth`` levels deep (the outer dict is level 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def rejected_quickly(fn: Any, data: bytes) -> tuple[float, int]:
    """Run ``fn(data)``, which must raise ProtocolError; returns its seconds and peak bytes.

    Timed on its own, then run again under tracemalloc (which slows it) for the peak. The time is
    this process's CPU time, so other work on a loaded machine does not count against the bound.
    """
    started = time.process_time()
    with pytest.raises(ProtocolError):
        fn(data)
    seconds = time.process_time() - started
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            fn(data)
        return seconds, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- job args -------------------------------------------------------------------------------------

ARGS_PREFIX = b"\x81\xa1k"  # {"k": <value>}

ARGS_BOMBS = {
    "deep nesting, 40 levels": ARGS_PREFIX + b"\x91" * 40 + b"\xc0",
    "deep nesting, 100k levels": ARGS_PREFIX + b"\x91" * 100_000 + b"\xc0",
    "array header announcing 4G items": ARGS_PREFIX + b"\xdd\xff\xff\xff\xff",
    "map header announcing 4G items": ARGS_PREFIX + b"\xdf\xff\xff\xff\xff",
    "str header announcing 4 GiB": ARGS_PREFIX + b"\xdb\xff\xff\xff\xff" + b"x" * 100,
    "bin header announcing 4 GiB": ARGS_PREFIX + b"\xc6\xff\xff\xff\xff" + b"x" * 100,
    "a megabyte of empty maps in one array": ARGS_PREFIX + b"\xdd\x00\x10\x00\x00" + b"\x80" * MiB,
    "a megabyte of empty maps in short arrays": ARGS_PREFIX
    + b"\xdc\x01\x00"
    + (b"\xdc\x10\x00" + b"\x80" * 4096) * 256,
    "a megabyte of empty arrays": ARGS_PREFIX
    + b"\xdc\x04\x00"
    + (b"\xdc\x04\x00" + b"\x90" * 1024) * 1024,
    "int keys": b"\x82\x01\xa1a\x02\xa1b",
    "nested int keys": ARGS_PREFIX + b"\x81\xcf" + b"\x01" * 8 + b"\xc0",
    "float key": b"\x81\xcb" + b"\x00" * 8 + b"\xc0",
    "array key": b"\x81\x91\x01\xc0",
    "ExtType": msgpack.packb({"k": msgpack.ExtType(7, b"payload")}),
    "timestamp ExtType": ARGS_PREFIX + b"\xd6\xff" + b"\x00" * 4,
    "bad UTF-8": ARGS_PREFIX + b"\xa4ab\xff\xfe",
    "UTF-8 surrogate": ARGS_PREFIX + b"\xa3\xed\xa0\x80",
    "not a map": msgpack.packb([1, 2, 3]),
    "truncated": ARGS_PREFIX + b"\xa9abc",
    "trailing bytes": msgpack.packb({"k": 1}) + b"\x00",
    "empty": b"",
}


@pytest.mark.parametrize("data", ARGS_BOMBS.values(), ids=ARGS_BOMBS.keys())
def test_unpack_args_rejects_bombs_quickly_in_bounded_memory(data: bytes) -> None:
    seconds, peak = rejected_quickly(P.unpack_args, data)
    assert seconds < 2.0
    # The worst case is ARGS_MAX_CONTAINERS empty containers (~64 bytes each) before the stop.
    assert peak < 2 * len(data) + 8 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_args_at_the_limits_decode() -> None:
    deepest = nested(P.ARGS_MAX_DEPTH)
    assert P.unpack_args(P.pack_args(deepest)) == deepest
    wide = {"items": list(range(P.ARGS_MAX_ITEMS))}
    assert P.unpack_args(P.pack_args(wide)) == wide
    many = {"rows": [[i] for i in range(P.ARGS_MAX_CONTAINERS - 2)]}
    assert P.unpack_args(P.pack_args(many)) == many
    keys = {"text": "ünïcode", b"raw": b"\x00\xff"}
    assert P.unpack_args(P.pack_args(keys)) == keys  # type: ignore[arg-type]


def test_unpack_args_refuses_what_msgpack_would_nest_past_the_limit() -> None:
    raw = msgpack.packb(nested(P.ARGS_MAX_DEPTH + 1))
    with pytest.raises(ProtocolError, match="deeper than 32 levels"):
        P.unpack_args(raw)


def test_pack_args_refuses_deep_nesting_with_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"nested 33 levels deep, over the limit of 32"):
        P.pack_args(nested(33))
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(TypeError, match="nested 33 levels"):
        P.pack_args({"loop": cycle})


def test_pack_args_names_a_key_that_is_not_a_string() -> None:
    with pytest.raises(TypeError, match=r"args\['outer'\]\['inner'\] has the int key 7"):
        P.pack_args({"outer": {"inner": {7: "x"}}})
    with pytest.raises(TypeError, match="has the NoneType key None"):
        P.pack_args({None: 1})


def test_pack_args_refuses_more_items_than_the_other_side_takes() -> None:
    with pytest.raises(MessageTooLargeError, match=r"args\['big'\] has 262145 items"):
        P.pack_args({"big": [0] * (P.ARGS_MAX_ITEMS + 1)})
    with pytest.raises(MessageTooLargeError, match="lists and dicts"):
        P.pack_args({"rows": [[0] for _ in range(P.ARGS_MAX_CONTAINERS)]})


def test_result_args_are_made_decodable() -> None:
    """Job code may leave anything in args: feedback must still decode on the other side."""
    cycle: list[Any] = []
    cycle.append(cycle)
    out = P.unpack_args(
        P.pack_result_args({"by_status": {200: 3, 404: 1}, "deep": nested(50), "cycle": cycle})
    )
    assert out["by_status"] == {"200": 3, "404": 1}
    assert P.nesting_depth(out) <= P.ARGS_MAX_DEPTH
    assert "past the args limits" in str(out["deep"])


def test_nesting_depth_walks_without_recursion() -> None:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    assert P.nesting_depth(value, limit=10**6) == 100_001
    assert P.nesting_depth(value) == P.ARGS_MAX_DEPTH + 1
    assert P.nesting_depth("scalar") == 0


# -- the envelope ---------------------------------------------------------------------------------

FRAME_BOMBS = {
    "deep nesting": b"\x91" * 100_000 + b"\xc0",
    "array header announcing 4G messages": b"\xdd\xff\xff\xff\xff",
    "a megabyte of empty maps": b"\xdc\x00\x10" + (b"\xdc\xff\xff" + b"\x80" * 65535) * 16,
    "four megabytes of empty arrays": b"\xdc\x00\x3f" + (b"\xdc\xff\xff" + b"\x90" * 65535) * 63,
    "a map": msgpack.packb({"k": 1}),
    "int keys": b"\x91\x81\x01\x02",
    "ExtType": msgpack.packb([msgpack.ExtType(3, b"x" * 100)]),
    "bad UTF-8": b"\x91\x93\x0b\xa2\xff\xfe\xc3",
    "str header announcing 4 GiB": b"\x91\xdb\xff\xff\xff\xff" + b"x" * 100,
}


@pytest.mark.parametrize("data", FRAME_BOMBS.values(), ids=FRAME_BOMBS.keys())
def test_envelope_rejects_bombs_quickly_in_bounded_memory(data: bytes) -> None:
    codec = P.Codec()

    def decode(frame: bytes) -> None:
        messages, errors = codec.decode(frame)
        if not messages:
            raise ProtocolError(f"{len(errors)} bad messages")
        raise AssertionError(f"accepted {messages[:3]}")

    seconds, peak = rejected_quickly(decode, data)
    # 1.6 s of CPU on an idle machine for the worst frame (four megabytes of empty arrays); CPU
    # time still stretches under load (3.02 s once at load 5), so the bound is 5x: it catches a
    # decoder that stops bounding its work, not a busy neighbour.
    assert seconds < 8.0
    # One array or map per 2 bytes of frame at most: about 36x the frame in memory, half of
    # what the same frame cost without the budget (a schema-valid ack pair takes 3 bytes).
    assert peak < 40 * len(data) + 4 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize("id_len", [0, 1, 11])
def test_envelope_keeps_frames_of_many_small_acks(id_len: int) -> None:
    """The container budget leaves room for the densest valid frames: acks of short job ids."""
    codec = P.Codec()
    acks = [P.FeedbackAck([("x" * id_len, 1, 1) for _ in range(1000)]) for _ in range(100)]
    messages, errors = codec.decode(codec.encode(acks))  # type: ignore[arg-type]
    assert errors == [] and len(messages) == 100


# -- fuzzing the decoder -------------------------------------------------------------------------

VALID = P.Codec().encode(
    [
        P.Hello(2, "n", "s", 10, ["a"], True, False, "here", 1.0),
        P.Job("id", 1, "job", P.pack_args({"a": [1, {"b": "c"}]}), 0.0, 0.0, None, False, 0, 1.5),
        P.Feedback("id", 1, 1, P.SUCCESS, True, b"\x80", ("E", "m", "tb")),
        P.FeedbackAck([("a", 1, 1)]),
    ]
)

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(
            st.text(max_size=5) | st.integers(-(2**63), 2**63 - 1), children, max_size=4
        )
    ),
    max_leaves=40,
)


def check_decode(frame: bytes) -> None:
    codec = P.Codec(max_message_size=64 * 1024)
    try:
        messages, errors = codec.decode(frame)
    except ProtocolError:
        return
    assert all(isinstance(e, ProtocolError) for e in errors)
    # Whatever passed the schema is a well-formed message: it survives a round trip unchanged.
    again, errors = codec.decode(codec.encode(messages))
    assert errors == [] and again == messages


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_decoder_fuzz_random_bytes(frame: bytes) -> None:
    check_decode(frame)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(msgpack_values, max_size=8))
def test_decoder_fuzz_random_msgpack(items: list[Any]) -> None:
    check_decode(msgpack.packb(items))


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=6))
def test_decoder_fuzz_mutated_frames(flips: list[tuple[int, int]]) -> None:
    frame = bytearray(VALID)
    for index, value in flips:
        frame[index] = value
    check_decode(bytes(frame))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=500))
def test_unpack_args_fuzz(data: bytes) -> None:
    try:
        args = P.unpack_args(data)
    except ProtocolError:
        return
    assert type(args) is dict
    assert P.nesting_depth(args) <= P.ARGS_MAX_DEPTH
