"""How a ``reactor node`` process starts and exits around Redis (issue 10), as an operator sees
it: a wrong password is a clear error and a non-zero exit, and SIGTERM is honoured at every
point of the start, including while the node waits for an unreachable Redis."""

from __future__ import annotations

import signal
import time

import pytest

from reactor.testing import NodeProcess, free_port, wait_until

from ..conftest import NodeFactory
from .conftest import ServerFactory

pytestmark = pytest.mark.redis


def _exits_within(node: NodeProcess, seconds: float) -> int:
    began = time.monotonic()
    code = node.wait(seconds + 5)  # a generous cap; the assertion checks the real bound
    took = time.monotonic() - began
    assert took < seconds, f"exited after {took:.2f}s (limit {seconds}s):\n{node.output()[-2000:]}"
    return code


def test_a_wrong_password_exits_non_zero_within_5s_naming_authentication(
    start_node: NodeFactory, make_redis_server: ServerFactory
) -> None:
    server = make_redis_server(password="right-password")
    url = f"redis://:wrong-password@127.0.0.1:{server.port}/0"
    node = start_node("w1", [f"127.0.0.1:{free_port()}"], storage=url)
    code = _exits_within(node, 5.0)
    assert code == 2  # a start error, not a crash
    output = node.output()
    assert "StorageAuthError" in output and "authentication" in output, output[-2000:]
    assert "Task was destroyed but it is pending" not in output, output[-2000:]  # issue 22
    assert "wrong-password" not in output, "the password must not be logged"


def test_sigterm_while_waiting_for_an_unreachable_redis_exits_0_within_2s(
    start_node: NodeFactory,
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    node = start_node("w1", [f"127.0.0.1:{free_port()}"], storage=url)
    wait_until(lambda: "retrying (failure 2)" in node.output(), 20, message=node.output())
    node.signal(signal.SIGTERM)
    assert _exits_within(node, 2.0) == 0
    assert "stopped during its start" in node.output()


def test_sigterm_while_waiting_for_a_silent_distributor_exits_0_within_2s(
    start_node: NodeFactory, redis_url: str
) -> None:
    # The start waits a few heartbeat intervals for the distributor's answer: 1 s intervals here.
    settings = {"heartbeat_interval": 1.0, "heartbeat_timeout": 5.0}
    node = start_node("w1", [f"127.0.0.1:{free_port()}"], storage=redis_url, settings=settings)
    wait_until(lambda: "node w1 started" in node.output(), 20, message=node.output())
    node.signal(signal.SIGTERM)
    assert _exits_within(node, 2.0) == 0
    assert "stopped during its start" in node.output()
