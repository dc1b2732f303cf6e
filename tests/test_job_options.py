"""Issue 13's per-job options at enqueue: checked in the caller, carried to the node's record."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reactor import Config, Distributor
from reactor.testing import Cluster, async_wait_until

from .conftest import FAST


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"timeout": 0}, ValueError, "timeout= must be a finite number of seconds > 0"),
        ({"timeout": -1.5}, ValueError, "timeout="),
        ({"timeout": float("nan")}, ValueError, "timeout="),
        ({"timeout": "10"}, TypeError, "timeout= must be a number"),
        ({"max_attempt": 0}, ValueError, "max_attempt= must be between 1"),
        ({"max_attempt": 2.0}, TypeError, "max_attempt= must be a whole number"),
        ({"priority": 2**31}, ValueError, "priority= must be between"),
        ({"priority": 1.5}, TypeError, "priority= must be a whole number"),
        ({"priority": True}, TypeError, "priority="),
        ({"cron": "61 * * * *"}, ValueError, "bad cron expression"),
        ({"cron": "* * *"}, ValueError, "expected 5 fields"),
        ({"cron": "0 0 30 2 *"}, ValueError, "never fires"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, ValueError, "unknown time zone"),
        ({"cron": 5}, TypeError, "cron= must be a cron expression"),
        ({"tz": "Europe/Paris"}, ValueError, "tz= is the time zone of a cron= schedule"),
        ({"cron": "* * * * *", "period": 60}, ValueError, "cannot be combined with period="),
        ({"cron": "* * * * *", "after": 5}, ValueError, "cannot be combined with after="),
        ({"cron": "* * * * *", "run_at": time.time() + 9}, ValueError, "with run_at="),
    ],
)
async def test_bad_options_fail_in_the_caller(
    distributor: Distributor, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        distributor.enqueue("record", {}, **options)
    assert distributor.snapshot()["waiting"] == 0


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster({"noop": lambda args: None}, nodes=["opts"], config=Config(**FAST)) as c:
        yield c


async def test_options_reach_the_node_record(cluster: Cluster) -> None:
    distributor, node = cluster.distributor, cluster.node("opts")
    plain = distributor.enqueue("noop", {}, after=60)
    full = distributor.enqueue(
        "noop", {}, timeout=2.5, max_attempt=4, cron="30 2 * * *", tz="Europe/Paris", priority=-3
    )
    urgent = distributor.enqueue("noop", {}, after=60, priority=7)
    await async_wait_until(lambda: {plain.id, full.id, urgent.id} <= node.jobs.keys(), 10)
    a, b, c = node.jobs[plain.id], node.jobs[full.id], node.jobs[urgent.id]
    assert (a.timeout, a.max_attempt, a.cron, a.tz, a.priority) == (None, None, None, None, 0)
    assert (b.timeout, b.max_attempt, b.cron, b.tz, b.priority) == (
        2.5,
        4,
        "30 2 * * *",
        "Europe/Paris",
        -3,
    )
    assert c.priority == 7 and c.timeout is None
    # the cron job waits for its first run, a wall-clock instant at 02:30 Paris time
    assert b.run_at > time.time()
    assert time.strftime("%H:%M", time.gmtime(b.run_at)) in ("00:30", "01:30")


def _marked_options() -> dict[str, Any]:
    """A distinct marker object for every enqueue option, to see which field each lands in."""
    from reactor.jobs.options import EnqueueOptions

    return {field: object() for field in EnqueueOptions._fields if field not in ("trace", "flow")}


class _Recorder(Distributor):
    """Records the EnqueueOptions that reach ``submit``, sending nothing."""

    seen: list[Any]

    def submit(self, name: str, args: Any, options: Any = None) -> Any:
        self.seen.append(options)


def test_enqueue_keywords_are_exactly_the_spec_fields_with_its_defaults() -> None:
    """JR.enqueue and Distributor.enqueue spell out the keywords of EnqueueOptions, no more."""
    import inspect

    import reactor
    from reactor.jobs.options import EnqueueOptions

    for enqueue in (Distributor.enqueue, reactor.enqueue):
        params = inspect.signature(enqueue).parameters
        keywords = {
            n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        # ``trace`` is set by tracing instrumentation, never by the caller; ``flow`` gathers the
        # flow-control keywords (``**flow``, typed by FlowOptions).
        fields = {n: d for n, d in EnqueueOptions()._asdict().items() if n not in ("trace", "flow")}
        assert keywords == fields
        assert params["flow"].kind is inspect.Parameter.VAR_KEYWORD


def test_each_keyword_lands_in_its_own_field() -> None:
    """The tuple both enqueues build is in the spec's field order (facade and distributor)."""
    from reactor.app.runtime import Runtime
    from reactor.testing.facade import facade_routed_to

    recorder = _Recorder("127.0.0.1", 0)
    recorder.seen = []
    marked = _marked_options()
    recorder.enqueue("job", None, **marked)
    assert Runtime.facade is not None
    with facade_routed_to(recorder):
        Runtime.facade.enqueue("job", None, **marked)
    for options in recorder.seen:
        assert options._asdict() == {**marked, "trace": None, "flow": None}
    flow = {"concurrency_key": "k", "concurrency_limit": 2, "fair_key": "f"}
    recorder.seen = []
    recorder.enqueue("job", None, **flow)  # type: ignore[arg-type]
    with facade_routed_to(recorder):
        Runtime.facade.enqueue("job", None, **flow)  # type: ignore[arg-type]
    assert [options.flow for options in recorder.seen] == [flow, flow]
