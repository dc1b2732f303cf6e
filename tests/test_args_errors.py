"""Job args that msgpack cannot carry are refused at enqueue naming the exact path of the value."""

from __future__ import annotations

from typing import Any

import pytest

import reactor.wire.args as args_codec
import reactor.wire.protocol as P


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"outer": {"inner": [1, {2}]}}, r"job args\['outer'\]\['inner'\]\[1\] is a set, "),
        ({"good": 1, "bad": object()}, r"job args\['bad'\] is an object, which msgpack cannot"),
        ({"rows": [{"id": 1}, {"at": pytest}]}, r"args\['rows'\]\[1\]\['at'\] is a module"),
        ({"t": (1, 2, 3.5j)}, r"job args\['t'\]\[2\] is a complex"),
        ({"s": "\ud800"}, r"job args\['s'\] is a str that is not valid UTF-8"),
        ({"deep": {"\ud800": 1}}, r"job args\['deep'\] has a key that is not valid UTF-8"),
    ],
)
def test_an_unpackable_value_is_named_by_its_path(args: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        P.pack_args(args)


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"n": 2**70}, r"args\['n'\]"),
        ({"n": 2**64}, r"args\['n'\]"),
        ({"a": [1, 2, {"b": -(2**63) - 1}]}, r"args\['a'\]\[2\]\['b'\]"),
    ],
)
def test_a_big_integer_is_named_as_out_of_range(args: dict[str, Any], path: str) -> None:
    with pytest.raises(TypeError, match=rf"job {path} is an integer out of msgpack's 64-bit range"):
        P.pack_args(args)


def test_the_64_bit_extremes_still_travel() -> None:
    args = {"max": 2**64 - 1, "min": -(2**63), "flag": True}
    assert P.unpack_args(P.pack_args(args)) == args


def test_a_set_gets_a_hint_and_the_first_bad_value_in_order_is_named() -> None:
    with pytest.raises(TypeError, match=r"args\['a'\] is a frozenset.*can travel as a list"):
        P.pack_args({"a": frozenset(), "b": object()})


def test_flat_scalar_args_keep_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flat scalar dicts go straight to msgpack: neither the shape walk nor the path walk runs.
    def walked(*_: object) -> None:
        raise AssertionError("walked flat scalar args")

    monkeypatch.setattr(args_codec, "check_args_shape", walked)
    monkeypatch.setattr(args_codec, "_explain_unpackable", walked)
    args = {f"k{i}": i for i in range(20)} | {"s": "text", "f": 1.5, "n": None, "b": b"x"}
    assert P.unpack_args(P.pack_args(args)) == args
