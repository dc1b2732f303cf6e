"""Job tags outside Redis: kept in a node's memory storage, merged into ``job_itself``, checked by
``assert_enqueued(tags=)``, and refused at enqueue with one clear line when malformed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import reactor as JR
from reactor import Config, job
from reactor.storage.memory import MemoryStorage
from reactor.testing import CapturingDistributor, Cluster
from reactor.wire.messages import MAX_TAG_LEN, MAX_TAGS


@job("tagged_echo")
def tagged_echo(args: dict[str, Any]) -> None:
    args["seen_tags"] = args.get("job_itself", {}).get("tags")


def test_the_wire_limits_are_those_of_the_contract() -> None:
    assert (MAX_TAGS, MAX_TAG_LEN) == (16, 64)


async def test_tags_round_trip_through_memory_storage_and_reach_job_itself() -> None:
    config = Config(merge_job_itself_to_args=True, remove_done_jobs=False)
    async with Cluster(jobs=[tagged_echo], nodes=1, config=config) as cluster:
        tagged = cluster.enqueue("tagged_echo", {}, tags=["billing", "eu"])
        plain = cluster.enqueue("tagged_echo", {})
        results = await asyncio.wait_for(asyncio.gather(tagged, plain), 10)
        assert results[0]["seen_tags"] == ["billing", "eu"]
        assert results[0]["job_itself"]["tags"] == ["billing", "eu"]
        assert results[1]["seen_tags"] == []
        storage = cluster.nodes[0].storage
        assert isinstance(storage, MemoryStorage)
        kept_tagged, kept_plain = storage.get(tagged.id), storage.get(plain.id)
        assert kept_tagged is not None and kept_tagged.tags == ["billing", "eu"]
        assert kept_plain is not None and kept_plain.tags is None


def test_assert_enqueued_matches_every_given_tag() -> None:
    capture = CapturingDistributor()
    with capture.routing_facade():
        JR.enqueue("invoice", {"n": 1}, tags=["billing", "eu"])
        JR.enqueue("invoice", {"n": 2}, tags=["billing"])
        JR.enqueue("invoice", {"n": 3})
    assert len(capture.assert_enqueued("invoice", tags=["billing"])) == 2
    [both] = capture.assert_enqueued("invoice", tags=["eu", "billing"], count=1)
    assert both.args == {"n": 1}
    [untagged] = capture.assert_enqueued("invoice", tags=[], count=1)
    assert untagged.args == {"n": 3}
    capture.assert_enqueued("invoice", tags=["tenant:42"], count=0)
    with pytest.raises(
        AssertionError,
        match=r"expected at least one job\(s\) 'invoice' tagged \['us'\], found 0; "
        r"enqueued: invoice\(\{'n': 1\}, due in 0 s, tags \['billing', 'eu'\]\)",
    ):
        capture.assert_enqueued("invoice", tags=["us"])


@pytest.mark.parametrize(
    ("tags", "error", "says"),
    [
        ("billing", TypeError, r"^tags= must be a list of strings such as \['billing', 'eu'\]"),
        ([1], TypeError, "^tags= must hold strings only, not 1$"),
        (["x" * 65], ValueError, "^each tag must be 1 to 64 printable characters"),
        ([f"t{i}" for i in range(17)], ValueError, "^tags= takes at most 16 tags, not 17$"),
    ],
)
def test_bad_tags_are_refused_with_one_line(tags: object, error: type, says: str) -> None:
    capture = CapturingDistributor()
    with pytest.raises(error, match=says) as info:
        capture.enqueue("invoice", {}, tags=tags)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert capture.enqueued() == []
