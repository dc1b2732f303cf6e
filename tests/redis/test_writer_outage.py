"""The result store's and the flow store's writes outlast a Redis outage: made while a real
redis-server is killed, they are retried until it is back on its port, then are in Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest

from reactor.storage.flows import FlowStore, flow_key, group_flows_key, step_entry
from reactor.storage.results import ResultWriter, decode, result_key
from reactor.testing.redis_server import RedisServer
from reactor.testing.support import async_wait_until, free_port
from reactor.wire import protocol as P
from tests.redis.conftest import require_redis_server

pytestmark = pytest.mark.redis


def _done(job_id: str, value: int) -> P.Feedback:
    return P.Feedback(job_id, 1, 1, P.SUCCESS, True, P.pack_args({"value": value}), None)


async def test_result_and_flow_writes_made_during_an_outage_reach_redis_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_redis_server()
    caplog.set_level(logging.WARNING)
    with RedisServer(port=free_port()) as server:  # a fixed port: restarted where it was
        results = ResultWriter(server.url, ttl=600.0)
        flows = FlowStore(server.url, group="g", session="s1", ttl=600.0)
        try:
            results.record("before", "job", _done("before", 0))
            await async_wait_until(lambda: results.written == 1, message="no write before")
            server.kill()
            results.record("during", "job", _done("during", 1))
            flows.record("f1", 0, step_entry("done", "during", None, None))
            flows.finish("f1", "done", None)

            def refused(what: str) -> bool:
                return any(f"cannot write {what}" in r.getMessage() for r in caplog.records)

            await async_wait_until(lambda: refused("1 job results"), timeout=20.0)
            await async_wait_until(lambda: refused("2 flow records"), timeout=20.0)
            await asyncio.to_thread(server.restart)
            await async_wait_until(lambda: results.written == 2, timeout=20.0)
            await flows.close(timeout=20.0)  # the flow's batch is retried too, before the close
        finally:
            await results.close()
            await flows.close()
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        with server.client() as client:
            assert decode("during", client.get(result_key("during"))) == {"value": 1}
            record = client.hgetall(flow_key("f1"))
            assert set(record) == {b"0", b"end"}
            assert 0 < client.ttl(flow_key("f1")) <= 600
            assert client.hget(group_flows_key("g"), "f1") is None
