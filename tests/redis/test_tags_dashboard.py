"""The dashboard's node page shows job tags and filters by ``?tag=`` (repeatable: every tag must
match); the job page shows them too. A real ``reactor dashboard`` process over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from reactor.storage.redis import RedisStorage

from .conftest import make_job
from .test_dashboard import start_dashboard

pytestmark = pytest.mark.redis


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


async def test_node_page_shows_tags_and_filters_by_them(redis_url: str) -> None:
    storage = RedisStorage(redis_url)
    await storage.start("w1")
    await storage.add([
        make_job("both-tags", node="w1", tags=["billing", "eu"]),
        make_job("billing-only", node="w1", tags=["billing"]),
        make_job("untagged", node="w1"),
    ])  # fmt: skip
    await storage.close()
    proc, base = start_dashboard(redis_url)
    try:
        page = _get(f"{base}/nodes/w1")
        assert all(i in page for i in ("both-tags", "billing-only", "untagged"))
        assert 'href="/nodes/w1?tag=billing"' in page and ">eu</a>" in page
        billing = _get(f"{base}/nodes/w1?tag=billing")
        assert "both-tags" in billing and "billing-only" in billing and "untagged" not in billing
        both = _get(f"{base}/nodes/w1?tag=billing&tag=eu")
        assert "both-tags" in both and "billing-only" not in both
        assert 'name="tag" value="eu"' in both  # the filter form keeps what is applied
        assert "no matching jobs" in _get(f"{base}/nodes/w1?tag=nobody")
        job = _get(f"{base}/jobs/both-tags")
        assert 'id="tags"' in job and ">billing</a>" in job
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(f"{base}/nodes/w1?tag={'x' * 65}")
        assert refused.value.code == 400
        refused.value.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
