"""A job's tags and trace carrier travel from the enqueue, over the wire, into the node's
stored record (a real node process with Redis storage), and bad tags are refused at enqueue."""

from __future__ import annotations

import pytest

from reactor import Distributor
from reactor.jobs.options import EnqueueOptions
from reactor.ops.monitor import RedisMonitor
from reactor.testing.support import async_wait_until

from ..conftest import NodeFactory, wait_for_node

pytestmark = pytest.mark.redis

TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


async def test_tags_and_trace_reach_the_stored_record(
    distributor: Distributor, start_node: NodeFactory, redis_url: str
) -> None:
    proc = start_node("w1", [distributor.address], storage=redis_url)
    await wait_for_node(distributor, "w1", proc=proc)
    tagged = distributor.enqueue("record", {}, after=60, tags=["billing", "eu"])
    traced = distributor.submit("record", {}, EnqueueOptions(after=60, trace=TRACE))
    plain = distributor.enqueue("record", {}, after=60)
    with RedisMonitor(redis_url) as monitor:
        ids = {tagged.id, traced.id, plain.id}
        await async_wait_until(lambda: ids <= set(monitor.jobs_for("w1")), 10)
        records = {i: monitor.load(i) or {} for i in ids}
    assert records[tagged.id]["tags"] == ["billing", "eu"]
    assert records[tagged.id].get("trace") is None
    assert records[traced.id]["trace"] == TRACE and records[traced.id].get("tags") is None
    assert records[plain.id].get("tags") is None and records[plain.id].get("trace") is None


@pytest.mark.parametrize(
    ("tags", "says"),
    [
        ("billing", "must be a list of strings"),
        (["ok", 3], "must hold strings only"),
        ([""], "1 to 64 printable characters"),
        (["x" * 65], "1 to 64 printable characters"),
        (["a\nb"], "1 to 64 printable characters"),
        ([f"t{i}" for i in range(17)], "at most 16 tags"),
    ],
)
async def test_bad_tags_are_refused_at_enqueue_and_nothing_is_sent(
    distributor: Distributor, tags: object, says: str
) -> None:
    before = distributor.unstored_count()
    with pytest.raises((TypeError, ValueError), match=says):
        distributor.enqueue("record", {}, tags=tags)  # type: ignore[arg-type]
    assert distributor.unstored_count() == before


async def test_sixteen_tags_of_64_characters_and_a_tuple_are_accepted(
    distributor: Distributor,
) -> None:
    handle = distributor.enqueue("record", {}, tags=[f"{i:02d}" + "x" * 62 for i in range(16)])
    assert handle.id
    assert distributor.enqueue("record", {}, tags=("a", "b")).id
