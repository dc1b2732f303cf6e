"""Job arguments: a msgpack map carried as ``bin`` inside a message.

They come from the network, so they are decoded under their own limits (depth, items, containers),
and ``pack_args`` refuses at enqueue whatever ``unpack_args`` would refuse later, naming the exact
path of the bad value. The envelope codec in wire.codec shares the container budget and
the failure descriptions.
"""

from __future__ import annotations

from typing import Any

import msgpack

from reactor.errors import MessageTooLargeError, ProtocolError

#: Largest frame (and so largest packed args) unless configured otherwise.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


def reject_ext(code: int, data: bytes) -> Any:
    """msgpack ``ext_hook`` that refuses every extension type (none is part of the protocol)."""
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


#: How deeply arrays and maps may nest in job args (the args dict itself is level 1).
ARGS_MAX_DEPTH = 32
#: Items in one array or map of job args.
ARGS_MAX_ITEMS = 262_144
#: Arrays and maps in one job's args, all levels together.
ARGS_MAX_CONTAINERS = 65_536

_ARGS_LIMITS: dict[str, Any] = {
    "raw": False,
    "use_list": True,
    "strict_map_key": True,  # keys are str (or bytes): no int/float/None keys
    "max_array_len": ARGS_MAX_ITEMS,
    "max_map_len": ARGS_MAX_ITEMS,
    "max_ext_len": 0,
    "ext_hook": reject_ext,
}

_CONTAINERS = (dict, list, tuple, set, frozenset)


class ContainerBudget:
    """msgpack hooks that count the arrays and maps a decode builds and stop it past a budget."""

    __slots__ = ("count", "limit", "what")

    def __init__(self, limit: int, what: str) -> None:
        self.count = 0
        self.limit = limit
        self.what = what

    def on_list(self, value: list[Any]) -> list[Any]:
        self.count += 1
        if self.count > self.limit:
            raise ProtocolError(f"over {self.limit} arrays and maps in {self.what}")
        return value

    def on_map(self, value: dict[Any, Any]) -> dict[Any, Any]:
        self.count += 1
        if self.count > self.limit:
            raise ProtocolError(f"over {self.limit} arrays and maps in {self.what}")
        return value


def describe_failure(exc: Exception) -> str:
    """Why msgpack refused some bytes, without quoting any of them (they may be secret)."""
    if isinstance(exc, UnicodeDecodeError):
        return "a string is not valid UTF-8"
    if isinstance(exc, msgpack.ExtraData):
        return "extra bytes after the value"
    if isinstance(exc, msgpack.StackError):
        return "nested too deeply"
    return f"{type(exc).__name__}: {exc}"


def nesting_depth(value: Any, limit: int = ARGS_MAX_DEPTH) -> int:
    """How deeply arrays and maps nest in ``value`` (a scalar is 0, ``{}`` is 1).

    Walks with an explicit stack (no recursion) and stops as soon as the depth passes ``limit``,
    returning ``limit + 1``; so a cyclic structure ends too.
    """
    if not isinstance(value, _CONTAINERS):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return limit + 1
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, _CONTAINERS):
                stack.append((item, depth + 1))
    return deepest


def _path(path: tuple[Any, ...]) -> str:
    return "args" + "".join(f"[{p!r}]" for p in path)


def check_args_shape(args: dict[str, Any]) -> None:
    """Refuse args that :func:`unpack_args` would refuse on the other side.

    Raises:
        TypeError: a map key that is not str or bytes, or nesting deeper than ARGS_MAX_DEPTH.
        MessageTooLargeError: an array or map longer than ARGS_MAX_ITEMS, or more than
            ARGS_MAX_CONTAINERS arrays and maps in all.
    """
    # The common case, a flat dict of scalars under str keys, needs no walk.
    if len(args) <= ARGS_MAX_ITEMS:
        for key, value in args.items():
            if type(key) is not str or isinstance(value, _CONTAINERS):
                break
        else:
            return
    _walk_args_shape(args)


def _walk_args_shape(args: dict[str, Any]) -> None:
    """:func:`check_args_shape`'s walk over nested args (flat ones never get here)."""
    containers = 0
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(args, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > ARGS_MAX_DEPTH:
            raise TypeError(
                f"job {_path(path)} is nested {depth} levels deep, over the limit of "
                f"{ARGS_MAX_DEPTH} levels (counting the args dict)"
            )
        containers += 1
        if containers > ARGS_MAX_CONTAINERS:
            raise MessageTooLargeError(
                f"job args hold over {ARGS_MAX_CONTAINERS} lists and dicts; pass a reference "
                "(a key or a path) instead of the data"
            )
        if len(node) > ARGS_MAX_ITEMS:
            raise MessageTooLargeError(
                f"job {_path(path)} has {len(node)} items, over the limit of {ARGS_MAX_ITEMS}; "
                "pass a reference (a key or a path) instead of the data"
            )
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str | bytes):
                    raise TypeError(
                        f"job {_path(path)} has the {type(key).__name__} key {key!r}: job args "
                        "use str keys at every level"
                    )
                if isinstance(item, _CONTAINERS):
                    stack.append((item, depth + 1, (*path, key)))
        else:
            for index, item in enumerate(node):
                if isinstance(item, _CONTAINERS):
                    stack.append((item, depth + 1, (*path, index)))


def pack_args(args: Any, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> bytes:
    """Encode a job's argument dict, failing in the caller with the offending key named.

    Raises:
        TypeError: ``args`` is not a dict, a value cannot be carried by msgpack, a key is not a
            string, or the args nest deeper than ``ARGS_MAX_DEPTH`` levels.
        MessageTooLargeError: the encoded arguments exceed ``max_size`` bytes, or hold more
            items than the args limits allow.
    """
    if type(args) is not dict:
        raise TypeError(f"job args must be a dict, not {type(args).__name__}")
    for key, value in args.items():  # the common case, flat args with str keys, needs no walk
        if type(key) is not str or isinstance(value, _CONTAINERS):
            check_args_shape(args)
            break
    else:
        if len(args) > ARGS_MAX_ITEMS:
            check_args_shape(args)
    try:
        data: bytes = msgpack.packb(args, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(_explain_unpackable(args, exc)) from None
    if len(data) > max_size:
        raise MessageTooLargeError(
            f"job args encode to {len(data)} bytes, over the {max_size}-byte message limit; "
            "pass a reference (a key or a path) instead of the data, or raise max_message_size"
        )
    return data


#: The integers msgpack can carry: int64 and uint64.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_CARRIED = "use str, int, float, bool, None, bytes, list or dict values"


def _explain_unpackable(args: dict[Any, Any], exc: Exception) -> str:
    """Why msgpack refused ``args``, naming the exact path of the first bad value.

    Only called after encoding failed, so the fast path pays nothing for it. The args already
    passed :func:`check_args_shape` when they hold containers, so the walk is bounded.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(args, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, str) and not _utf8(key):
                    return f"job {_path(path)} has a key that is not valid UTF-8: {key!r}"
            stack.extend((v, (*path, k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, list | tuple):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
        else:
            problem = _leaf_problem(value)
            if problem:
                return f"job {_path(path)} {problem}"
    return f"job args cannot be encoded with msgpack: {exc}"


def _leaf_problem(value: Any) -> str:
    """What is wrong with one non-container value, or "" when msgpack takes it."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT_MIN <= value <= _INT_MAX:
            return (
                "is an integer out of msgpack's 64-bit range (-2**63 to 2**64 - 1): "
                "send it as a str"
            )
        return ""
    try:
        msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(value, str):
            return f"is a str that is not valid UTF-8 ({exc})"
        name = type(value).__name__
        article = "an" if name[:1].lower() in "aeiou" else "a"
        hint = " (a set can travel as a list)" if isinstance(value, set | frozenset) else ""
        return f"is {article} {name}, which msgpack cannot carry{hint}: {_CARRIED}"
    return ""


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


#: Args this small cannot hold more arrays and maps than the budget (each takes a byte at least):
#: they decode without the counting hooks.
_SMALL_ARGS = ARGS_MAX_CONTAINERS
_SMALL_ARGS_LIMITS = {**_ARGS_LIMITS, "max_str_len": _SMALL_ARGS, "max_bin_len": _SMALL_ARGS}


def unpack_args(data: bytes) -> dict[str, Any]:
    """Decode a job's arguments under the args limits (they may come from a hostile peer).

    Raises:
        ProtocolError: the data is not a msgpack map with str keys, or breaks a limit: nesting
            past ``ARGS_MAX_DEPTH``, an array or map over ``ARGS_MAX_ITEMS`` items, more than
            ``ARGS_MAX_CONTAINERS`` arrays and maps, an extension type, or invalid UTF-8.
    """
    size = len(data)
    try:
        if size <= _SMALL_ARGS:
            args = msgpack.unpackb(data, **_SMALL_ARGS_LIMITS)
        else:
            budget = ContainerBudget(ARGS_MAX_CONTAINERS, "job args")
            args = msgpack.unpackb(
                data,
                max_str_len=size,
                max_bin_len=size,
                list_hook=budget.on_list,
                object_hook=budget.on_map,
                **_ARGS_LIMITS,
            )
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"undecodable job args: {describe_failure(exc)}") from None
    if type(args) is not dict:
        raise ProtocolError(f"job args must decode to a map, not {type(args).__name__}")
    # Nesting past the limit takes more bytes than that: small args skip the walk.
    if size > ARGS_MAX_DEPTH and nesting_depth(args) > ARGS_MAX_DEPTH:
        raise ProtocolError(f"job args nest deeper than {ARGS_MAX_DEPTH} levels")
    return args


def _lenient(obj: Any) -> Any:
    """Stand-in for a value job code put in args that msgpack cannot carry."""
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return repr(obj)


def _sanitize(value: Any, depth: int, budget: list[int]) -> Any:
    """A copy of job output that :func:`unpack_args` accepts: str keys, bounded nesting."""
    if not isinstance(value, _CONTAINERS):
        return value
    budget[0] -= 1
    if depth > ARGS_MAX_DEPTH or budget[0] < 0:
        return f"<{type(value).__name__} nested or repeated past the args limits>"
    if isinstance(value, dict):
        return {
            k if isinstance(k, str | bytes) else str(k): _sanitize(v, depth + 1, budget)
            for k, v in list(value.items())[:ARGS_MAX_ITEMS]
        }
    return [_sanitize(v, depth + 1, budget) for v in list(value)[:ARGS_MAX_ITEMS]]


def pack_result_args(args: dict[str, Any]) -> bytes:
    """Encode a job's final args for feedback; values msgpack cannot carry become their repr.

    Job code may leave anything in args: keys that are not strings become ``str(key)``, and
    parts nested past the args limits become a short note, so the other side can decode them.
    """
    try:
        check_args_shape(args)
    except (TypeError, MessageTooLargeError):
        args = _sanitize(args, 1, [ARGS_MAX_CONTAINERS])
    data: bytes = msgpack.packb(args, use_bin_type=True, default=_lenient)
    return data
