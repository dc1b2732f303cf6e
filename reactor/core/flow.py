"""FlowMachine: the one rule of a workflow (sans-I/O). Fed each step's outcome, it says which
steps to enqueue next and when the flow ends; the distributor's flow driver, the testing
helpers and the simulation all run it.

The flow comes as built by :mod:`reactor.jobs.flow`, read through each part's ``kind``
(``step``, ``chain``, ``group``, ``chord``), so the core imports no jobs code.

Rules (DESIGN §11): in a chain a part starts once the previous one succeeded, with the previous
result merged under its own args (a group's result arrives as ``{"results": [...]}``); a group's
members start together and its result is the list of their results in order; a chord is a chain
of its group and its callback. The first failure ends the flow with that step's error; after the
end no step starts, and steps already enqueued run to their end (their outcomes are recorded and
change nothing). Each step's outcome counts once. Work per outcome is O(nesting depth), never
O(flow size); memory is one slot per step plus each group's result list.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple

#: A step's status, as ``FlowHandle.steps`` and ``reactor monitor flow`` show it.
PENDING = "pending"  # waits for what it depends on
ENQUEUED = "enqueued"  # sent as a job; no outcome yet
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
SKIPPED = "skipped"  # never ran: the flow ended first
ENDED = frozenset({SUCCEEDED, FAILED, CANCELLED, SKIPPED})


class Launch(NamedTuple):
    """A step to enqueue now: its number in the flow, job name, args and enqueue options."""

    number: int
    name: str
    args: dict[str, Any]
    options: Any


class _Node:
    """A part of the compiled flow: where its result goes (parent and slot there)."""

    __slots__ = ("parent", "slot")

    def __init__(self) -> None:
        self.parent: _Seq | _Par | None = None
        self.slot = 0


class _Leaf(_Node):
    __slots__ = ("index", "step")

    def __init__(self, index: int, step: Any) -> None:
        super().__init__()
        self.index = index
        self.step = step


class _Seq(_Node):
    __slots__ = ("children",)

    def __init__(self, children: list[_Node]) -> None:
        super().__init__()
        self.children = children


class _Par(_Node):
    __slots__ = ("children", "remaining", "results")

    def __init__(self, children: list[_Node]) -> None:
        super().__init__()
        self.children = children
        self.results: list[Any] = []
        self.remaining = 0


class FlowMachine:
    """One flow's progress: which steps run, which ended, and the flow's outcome.

    Args:
        flow: the flow as built by :mod:`reactor.jobs.flow` (already checked): a step (``name``,
            ``args``, ``options``), a chain or group (``parts``), or a chord (``header``,
            ``body``), each telling its ``kind``.

    Attributes:
        status: each step's status, by index (steps are numbered depth first).
        job_ids: each step's job id once enqueued (the driver sets it), else None.
        done: whether the flow ended (succeeded, failed or cancelled).
        result: the flow's result once it succeeded (a dict, or a group's list).
        error: what ended it otherwise (the failed step's error, or a cancel's).
    """

    def __init__(self, flow: Any) -> None:
        self.leaves: list[_Leaf] = []
        self.root = self._compile(flow)
        size = len(self.leaves)
        self.status: list[str] = [PENDING] * size
        self.job_ids: list[str | None] = [None] * size
        self.done = False
        self.result: Any = None
        self.error: object | None = None

    def __len__(self) -> int:
        return len(self.leaves)

    def _compile(self, flow: Any) -> _Node:
        """The flow as a tree of nodes, leaves numbered depth first (recursing only as deep as
        the flow nests)."""
        kind = flow.kind
        if kind == "step":
            leaf = _Leaf(len(self.leaves), flow)
            self.leaves.append(leaf)
            return leaf
        parts = (flow.header, flow.body) if kind == "chord" else flow.parts
        children = [self._compile(part) for part in parts]
        node: _Seq | _Par = _Par(children) if kind == "group" else _Seq(children)
        for slot, child in enumerate(children):
            child.parent, child.slot = node, slot
        return node

    # -- events -----------------------------------------------------------------------------------

    def start(self) -> list[Launch]:
        """The steps to enqueue first."""
        out: list[Launch] = []
        self._begin(self.root, {}, out)
        return out

    def succeeded(self, index: int, args: dict[str, Any]) -> list[Launch]:
        """Step ``index`` succeeded with final ``args``; returns the steps to enqueue now."""
        if self.status[index] in ENDED:
            return []  # its outcome counted already
        self.status[index] = SUCCEEDED
        if self.done:
            return []
        out: list[Launch] = []
        self._finish(self.leaves[index], args, out)
        return out

    def failed(self, index: int, error: object, *, cancelled: bool = False) -> bool:
        """Step ``index`` failed (or was cancelled) with ``error``; returns whether this ended
        the flow (so the driver reports its failure once)."""
        if self.status[index] in ENDED:
            return False
        self.status[index] = CANCELLED if cancelled else FAILED
        if self.done:
            return False
        self._end(None, error)
        return True

    def resume(self, ended: dict[int, tuple[bool, Any]]) -> list[Launch]:
        """Replay the outcomes a crashed owner recorded (``ended``: step number -> (succeeded,
        final args or error)), in the order the rule allows them; returns the steps to enqueue
        now: those that had started without a recorded end, and those that follow.

        Recorded outcomes of steps that could not have started yet are ignored (they cannot
        exist, as a step is launched only after what it depends on succeeded).
        """
        queue = deque(self.start())
        out: list[Launch] = []
        while queue:
            launch = queue.popleft()
            known = ended.get(launch.number)
            if known is None:
                out.append(launch)
                continue
            succeeded, value = known
            if succeeded:
                queue.extend(self.succeeded(launch.number, value))
            else:
                self.failed(launch.number, value)
        return [] if self.done else out

    def not_sent(self, index: int) -> None:
        """Step ``index`` was launched but never enqueued (the flow was cancelled first)."""
        if self.status[index] == ENQUEUED:
            self.status[index] = SKIPPED

    def cancel(self, error: object) -> list[int]:
        """End the flow with ``error`` (a cancel); returns the enqueued steps to cancel."""
        if self.done:
            return []
        self._end(None, error)
        return [i for i, status in enumerate(self.status) if status == ENQUEUED]

    # -- the tree ---------------------------------------------------------------------------------

    def _begin(self, node: _Node, given: dict[str, Any], out: list[Launch]) -> None:
        if isinstance(node, _Leaf):
            step = node.step
            self.status[node.index] = ENQUEUED
            args = {**given, **step.args} if given else dict(step.args)
            out.append(Launch(node.index, step.name, args, step.options))
        elif isinstance(node, _Seq):
            self._begin(node.children[0], given, out)
        else:
            assert isinstance(node, _Par)
            node.results = [None] * len(node.children)
            node.remaining = len(node.children)
            for child in node.children:
                self._begin(child, given, out)

    def _finish(self, node: _Node, result: Any, out: list[Launch]) -> None:
        """``node`` produced ``result``: pass it up until a part has more to start."""
        while True:
            parent = node.parent
            if parent is None:
                self._end(result, None)
                return
            if isinstance(parent, _Seq):
                following = node.slot + 1
                if following < len(parent.children):
                    self._begin(parent.children[following], _as_args(result), out)
                    return
            else:
                assert isinstance(parent, _Par)
                parent.results[node.slot] = result
                parent.remaining -= 1
                if parent.remaining:
                    return
                result, parent.results = parent.results, []
            node = parent

    def _end(self, result: Any, error: object | None) -> None:
        self.done = True
        self.result = result
        self.error = error
        status = self.status
        for index, value in enumerate(status):
            if value == PENDING:
                status[index] = SKIPPED

    def steps(self) -> list[tuple[str | None, str, str]]:
        """``(job id, name, status)`` of every step, in flow order."""
        return [
            (self.job_ids[i], leaf.step.name, self.status[i]) for i, leaf in enumerate(self.leaves)
        ]


def _as_args(result: Any) -> dict[str, Any]:
    """A part's result as the next part's args: a group's list under ``"results"``."""
    if isinstance(result, list):
        return {"results": result}
    return result if isinstance(result, dict) else {}
