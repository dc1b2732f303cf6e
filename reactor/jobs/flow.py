"""Workflows as data: :func:`step`, :func:`chain`, :func:`group` and :func:`chord`, checked when
built, so a flow that cannot run fails in the caller with a :class:`~reactor.errors.FlowError`
before any of its jobs is enqueued (DESIGN §11 "Workflows across jobs")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

from reactor.errors import FlowError
from reactor.jobs.options import PLAIN, EnqueueOptions

__all__ = ["Chain", "Chord", "Flow", "Group", "Step", "chain", "chord", "group", "step"]

#: Enqueue options a step cannot take: the flow owns its steps' outcomes (no feedback callables,
#: no second handle from a unique key), and a step runs once (not periodic).
REFUSED = frozenset(
    {"on_success", "on_error", "period", "cron", "tz", "unique_key", "unique_for", "trace"}
)


class Step:
    """One job of a flow: its name, its own args and its enqueue options (see :func:`step`)."""

    kind = "step"  # how the core's FlowMachine tells the parts apart (it imports no jobs code)
    __slots__ = ("args", "name", "options")

    def __init__(self, name: str, args: dict[str, Any], options: EnqueueOptions) -> None:
        self.name = name
        self.args = args
        self.options = options

    def __repr__(self) -> str:
        return f"step({self.name!r}, {self.args!r})"


class Parts:
    """A chain's or a group's parts, in order."""

    __slots__ = ("parts",)
    kind = ""

    def __init__(self, parts: tuple[Flow, ...]) -> None:
        self.parts = parts

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self.parts[:3]))
        more = f", ... {len(self.parts) - 3} more" if len(self.parts) > 3 else ""
        return f"{self.kind}({shown}{more})"


class Chain(Parts):
    """Parts that run one after the other, each after the previous one succeeded."""

    __slots__ = ()
    kind = "chain"


class Group(Parts):
    """Parts that run side by side; the result is the list of their results, in order."""

    __slots__ = ()
    kind = "group"


class Chord:
    """A group and a callback that runs once every member succeeded, with
    ``args["results"]`` the group's results in order."""

    kind = "chord"
    __slots__ = ("body", "header")

    def __init__(self, header: Group, body: Flow) -> None:
        self.header = header
        self.body = body

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


Flow: TypeAlias = Step | Chain | Group | Chord
FLOW_TYPES = (Step, Chain, Group, Chord)


def step(name: str, args: dict[str, Any] | None = None, **options: Any) -> Step:
    """One job of a flow: ``name`` with ``args`` and any enqueue option (``node=``,
    ``timeout=``, ``max_attempt=``, ``priority=``, ``tags=``, ...).

    In a chain, the step's args are the previous part's final args with its own args over them
    (its own keys win); after a group, the previous result is ``{"results": [...]}``.

    Raises:
        FlowError: an empty name, args that are not a dict, an unknown option or one a step
            cannot take (feedback callables, ``period``, ``cron``, ``unique_key``), or a bad
            option value (the message says which).
    """
    if type(name) is not str or not name:
        raise FlowError(f"a step's job name must be a non-empty string, not {name!r}")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        raise FlowError(f"step {name!r}: args must be a dict, not {type(args).__name__}")
    if not options:
        return Step(name, args, PLAIN)
    refused = sorted(REFUSED & options.keys())
    if refused:
        raise FlowError(
            f"step {name!r} cannot take {', '.join(refused)}= (give on_success=/on_error= to "
            "enqueue_flow; a step runs once)"
        )
    try:
        built = EnqueueOptions(**options)
        built.check()
    except TypeError as exc:
        raise FlowError(f"step {name!r}: {exc}") from None
    except ValueError as exc:
        raise FlowError(f"step {name!r}: {exc}") from None
    return Step(name, args, built)


def chain(*parts: Flow | Iterable[Flow]) -> Chain:
    """Parts run in order, each once the previous one succeeded; the result is the last's.

    ``chain(a, b, c)`` or ``chain([a, b, c])`` (one iterable).

    Raises:
        FlowError: no parts, or a part that is not a step, chain, group or chord.
    """
    return Chain(_parts("chain", parts))


def group(*parts: Flow | Iterable[Flow]) -> Group:
    """Parts run side by side; the result is the list of their results, in order.

    ``group(a, b)`` or ``group(step("resize", {"size": s}) for s in sizes)`` (one iterable).

    Raises:
        FlowError: no parts, or a part that is not a step, chain, group or chord.
    """
    return Group(_parts("group", parts))


def chord(header: Group | Iterable[Flow], body: Flow) -> Chord:
    """``header``'s members run side by side; ``body`` runs once all of them succeeded, with
    ``args["results"]`` the list of their results in order.

    Raises:
        FlowError: an empty header, or a part that is not a flow.
    """
    if not isinstance(header, Group):
        header = group(header)
    if not isinstance(body, FLOW_TYPES):
        raise FlowError(f"a chord's callback must be a step (or a flow), not {_what(body)}")
    return Chord(header, body)


def _parts(kind: str, given: tuple[Any, ...]) -> tuple[Flow, ...]:
    """The parts of a chain or group: the arguments, or the one iterable given."""
    if len(given) == 1 and not isinstance(given[0], FLOW_TYPES):
        if isinstance(given[0], str | bytes | dict) or not isinstance(given[0], Iterable):
            raise FlowError(f"a {kind}'s parts must be steps or flows, not {_what(given[0])}")
        given = tuple(given[0])
    for index, part in enumerate(given):
        if not isinstance(part, FLOW_TYPES):
            raise FlowError(
                f"part {index} of a {kind} is {_what(part)}, not a step or flow "
                '(write step("name", args))'
            )
    if not given:
        raise FlowError(f"an empty {kind}: give it at least one step")
    return given


def _what(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"
