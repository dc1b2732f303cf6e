"""Redis fixtures: one throwaway redis-server per session, a clean database per test."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import pytest
import redis as sync_redis
from redis.cluster import RedisCluster

from reactor.jobs.record import JobRecord
from reactor.storage.base import Storage
from reactor.storage.memory import MemoryStorage
from reactor.storage.redis import RedisStorage
from reactor.storage.redis_layout import cluster_url
from reactor.testing.support import async_wait_until, wait_until

__all__ = ["async_wait_until", "make_job", "store_many", "sync_client", "wait_until"]
from reactor.testing.redis_server import RedisClusterServers, RedisServer, redis_server_available

_DATABASES = 256
_next_db = itertools.count(1)


def require_redis_server(executable: str = "redis-server") -> None:
    """Skip when ``executable`` is missing, but fail under ``CI=true``: CI must run these."""
    if redis_server_available(executable):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{executable} is not on PATH, and CI=true requires the Redis tests to run")
    pytest.skip(f"{executable} is not on PATH")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free loopback port for the whole session (never killed by tests)."""
    require_redis_server()
    with RedisServer(databases=_DATABASES) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A URL to a database of its own for this test, empty at the start and flushed after."""
    db = next(_next_db) % (_DATABASES - 1) + 1
    with redis_server.client(db) as client:
        client.flushdb()
        yield redis_server.url_for(db)
        client.flushdb()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster on free loopback ports for the whole session."""
    require_redis_server()
    require_redis_server("redis-cli")  # creates the cluster
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> Iterator[str]:
    """A ``redis+cluster://`` URL to the session's cluster, empty at the start and flushed after."""
    redis_cluster.flush()
    yield redis_cluster.url
    redis_cluster.flush()


@pytest.fixture
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """A single server's URL, or a Cluster's (``redis+cluster://``): the test's ``backend``
    parameter (``redis`` or ``redis-cluster``) says which."""
    fixture = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


def sync_client(url: str) -> sync_redis.Redis | RedisCluster:
    """A synchronous client for a test's checks: a :class:`RedisCluster` for a Cluster URL."""
    client_url, cluster = cluster_url(url)
    if cluster:
        return RedisCluster.from_url(client_url)
    return sync_redis.Redis.from_url(client_url)


#: Opens a started storage of the backend under test (``open_storage``).
StorageOpener = Callable[..., Awaitable[Storage]]


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
async def open_storage(request: pytest.FixtureRequest) -> AsyncIterator[StorageOpener]:
    """Open started storages of one backend (memory, Redis, Redis Cluster); a second open for
    the same node is a restart. Shared by the contract suite and the pruning tests."""
    opened: list[Storage] = []
    fixtures = {"memory": "", "redis": "redis_url", "redis-cluster": "redis_cluster_url"}
    url = request.getfixturevalue(fixtures[request.param]) if request.param != "memory" else ""

    async def opener(node: str = "worker_1") -> Storage:
        storage: Storage = MemoryStorage() if not url else RedisStorage(url, retry_base=0.05)
        await storage.start(node)
        opened.append(storage)
        return storage

    yield opener
    for storage in opened:
        await storage.close()


ServerFactory = Callable[..., RedisServer]


@pytest.fixture
def make_redis_server() -> Iterator[ServerFactory]:
    """Start dedicated servers a test may kill or restart; all are stopped at teardown."""
    require_redis_server()
    started: list[RedisServer] = []

    def factory(
        *, password: str | None = None, start: bool = True, extra_args: Sequence[str] = ()
    ) -> RedisServer:
        server = RedisServer(password=password, extra_args=extra_args)
        started.append(server)
        return server.start() if start else server

    yield factory
    for server in started:
        server.close()


def make_job(job_id: str, **fields: object) -> JobRecord:
    """A record with realistic defaults; ``fields`` override them."""
    values: dict[str, object] = {
        "id": job_id,
        "name": "test_job",
        "args": b"\x81\xa4arg1\x01",  # msgpack {"arg1": 1}
        "distributor": "127.0.0.1:5000",
        "node": "worker_1",
        "enqueued_at": 1_700_000_000.25,
        "run_at": 1_700_000_020.125,
    }
    values.update(fields)
    return JobRecord.from_dict(values)


@pytest.fixture
def apps() -> Iterator[list[subprocess.Popen[str]]]:
    """Application subprocesses a test starts (append them); SIGKILLed at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def store_many(url: str, node: str, total: int, *, failed_every: int = 1000) -> None:
    """Write ``total`` records of ``node`` straight into Redis (ids ``job-000000``, ...), every
    ``failed_every``-th one failed and the rest complete, as the node's storage lays them out."""
    import redis

    from reactor.jobs.record import COMPLETE, FAILED
    from reactor.storage.redis_layout import (
        encode_record,
        index_key,
        job_key,
        job_node_key,
        nodes_key,
    )

    with redis.Redis.from_url(url) as client:
        pipe = client.pipeline(transaction=False)
        for i in range(total):
            job_id = f"job-{i:06d}"
            status = FAILED if i % failed_every == failed_every - 1 else COMPLETE
            pairs, _ = encode_record(make_job(job_id, node=node, status=status, attempt=1))
            pipe.hset(
                job_key("reactor", node, job_id),
                mapping=dict(zip(pairs[::2], pairs[1::2], strict=True)),
            )
            pipe.sadd(index_key("reactor", node), job_id)
            pipe.hset(job_node_key("reactor"), job_id, node)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.sadd(nodes_key("reactor"), node)
        pipe.execute()
        assert client.scard(index_key("reactor", node)) == total
