"""A flow as msgpack bytes and back: what a durable flow's record keeps, so another member of
the group can rebuild the very flow it continues (see ``reactor.storage.flows``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack

from reactor.jobs.flow import Chain, Chord, Flow, Group, Step
from reactor.jobs.options import PLAIN, EnqueueOptions
from reactor.wire import protocol as P

#: The layout's version, first in the encoded list.
VERSION = 1


def encode_flow(flow: Flow) -> bytes:
    """``flow`` as bytes: ``[version, tree]`` where a step is ``["s", name, packed args,
    options]`` (only the options not at their default), a chain ``["c", parts]``, a group
    ``["g", parts]`` and a chord ``["h", group, body]``.

    Raises:
        TypeError: a step's args cannot be encoded (the key is named).
        MessageTooLargeError: a step's args exceed ``max_message_size``.
    """
    return bytes(msgpack.packb([VERSION, _tree(flow)], use_bin_type=True))


def decode_flow(raw: bytes) -> Flow:
    """The flow :func:`encode_flow` encoded.

    Raises:
        ValueError: ``raw`` is not an encoded flow.
    """
    try:
        version, tree = msgpack.unpackb(raw, raw=False)
        if version != VERSION:
            raise ValueError(f"layout version {version}, not {VERSION}")
        return _flow(tree)
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as exc:
        raise ValueError(f"not an encoded flow: {exc}") from exc


def _tree(flow: Flow) -> list[Any]:
    if isinstance(flow, Step):
        return ["s", flow.name, P.pack_args(flow.args), _options(flow.options)]
    if isinstance(flow, Chord):
        return ["h", _tree(flow.header), _tree(flow.body)]
    return ["c" if isinstance(flow, Chain) else "g", [_tree(part) for part in flow.parts]]


def _flow(tree: list[Any]) -> Flow:
    kind = tree[0]
    if kind == "s":
        options = EnqueueOptions(**tree[3]) if tree[3] else PLAIN
        return Step(str(tree[1]), P.unpack_args(tree[2]), options)
    if kind == "h":
        header = _flow(tree[1])
        if not isinstance(header, Group):
            raise ValueError("a chord's header is not a group")
        return Chord(header, _flow(tree[2]))
    parts = tuple(_flow(part) for part in tree[1])
    if kind == "c":
        return Chain(parts)
    if kind == "g":
        return Group(parts)
    raise ValueError(f"unknown part kind {kind!r}")


def _options(options: EnqueueOptions) -> dict[str, Any]:
    """The options not at their default, as msgpack can carry them (an instant as epoch
    seconds)."""
    kept: dict[str, Any] = {}
    for name, value in options._asdict().items():
        if value == getattr(PLAIN, name):
            continue
        if isinstance(value, dt.datetime):
            value = value.timestamp()
        elif isinstance(value, tuple):
            value = list(value)
        kept[name] = value
    return kept
