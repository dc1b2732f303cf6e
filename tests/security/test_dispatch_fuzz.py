"""Well-typed nonsense: thousands of schema-valid messages fed straight to the dispatchers.

Each message passes the envelope schema, so it reaches ``Distributor._on_messages`` or
``Node._on_messages``; none may raise or leave an error on the loop, and real jobs still run after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reactor import Config, Distributor, Node
from reactor.app.runtime import new_event_loop
from reactor.errors import ProtocolError
from reactor.testing.support import async_wait_until, free_port
from reactor.wire import protocol as P

from .conftest import FAST, Cleanup, LoopErrors, start_node

T = TypeVar("T")

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def messages_strategy(ids: list[str], names: list[str], sessions: list[str]) -> Any:
    """Schema-valid messages of every kind, with ids and names that often hit real ones."""
    # Ids, names and sessions must be printable (they reach log lines); anything else is
    # refused by the schema, which the decoding tests cover.
    label = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))
    an_id = st.sampled_from(ids) | st.text(label, max_size=12)
    a_name = st.sampled_from(names) | st.text(label, max_size=12)
    a_session = st.sampled_from(sessions) | st.text(label, max_size=8)
    count = st.integers(0, 2**31 - 1) | st.integers(0, 3)
    num = (
        st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(2**63), 2**63 - 1)
        | st.sampled_from([0.0, -1.0, 1e-9, 1e18])
    )
    period = st.none() | st.floats(min_value=1e-3, max_value=1e6)
    text = st.text(max_size=30)
    packed = st.dictionaries(
        st.text(max_size=6),
        st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6) | st.none(),
        max_size=4,
    ).map(P.pack_args)
    args = st.binary(max_size=40) | packed
    error = st.none() | st.tuples(text, text, text)
    ref = st.tuples(an_id, count).map(list)
    refs = st.lists(ref, max_size=4)
    kinds: list[Any] = [
        st.builds(
            lambda *v: [P.HELLO, *v],
            count | st.just(P.PROTOCOL_VERSION),
            a_name,
            a_session,
            count,
            st.lists(a_name, max_size=3),
            st.booleans(),
            st.booleans(),
            text,
            num,
        ),
        st.builds(
            lambda *v: [P.WELCOME, *v],
            count | st.just(P.PROTOCOL_VERSION),
            text,
            a_session,
            num,
            num,
            a_session,
        ),
        st.builds(
            lambda *v: [P.JOB, *v],
            an_id,
            count,
            a_name,
            args,
            st.floats(min_value=0, max_value=1e6) | st.just(0.0),
            num | st.just(0.0),
            period,
            st.booleans(),
            count,
            num,
        ),
        st.builds(lambda v: [P.STORED, v], refs),
        st.builds(lambda v, r: [P.REJECTED, v, r], refs, text),
        st.builds(
            lambda v: [P.PARKED, v], st.lists(st.tuples(an_id, count, count).map(list), max_size=4)
        ),
        st.builds(
            lambda v, r: [P.HANDBACK, v, r],
            st.lists(st.tuples(an_id, count, count, st.floats(0, 1e6)).map(list), max_size=4),
            text,
        ),
        st.builds(lambda v: [P.HANDBACK_ACK, v], refs),
        st.builds(lambda v: [P.CANCEL, v], refs),
        st.builds(lambda v: [P.REVOKE, v], refs),
        st.builds(
            lambda *v: [P.FEEDBACK, *v],
            an_id,
            count,
            count,
            count,
            st.booleans(),
            args,
            error.map(lambda e: None if e is None else list(e)),
        ),
        st.builds(
            lambda v: [P.FEEDBACK_ACK, v],
            st.lists(st.tuples(an_id, count, count).map(list), max_size=4),
        ),
        st.builds(lambda *v: [P.HEARTBEAT, *v], a_session, st.booleans(), num, count),
        st.builds(lambda *v: [P.SYNC, *v], count, refs, st.booleans()),
        st.builds(lambda *v: [P.SYNC_REPLY, *v], count, refs, st.booleans()),
        st.builds(lambda v: [P.RESET, v], text),
        st.builds(lambda *v: [P.REFUSED, *v], a_session, a_name, text),
        st.builds(lambda v: [P.BYE, v], a_session),
    ]
    return st.one_of(kinds).map(P.decode_message)


class LoopRunner:
    """A private event loop (hypothesis cannot drive an async test function)."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.errors = LoopErrors()
        self.loop.set_exception_handler(self.errors)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def spin(self) -> None:
        self.run(asyncio.sleep(0.001))

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


def fuzz(
    runner: LoopRunner, strategy: Any, peers: list[Any], feed: Callable[[Any, list[Any]], None]
) -> int:
    """Feed hypothesis-made message lists; returns how many messages went in."""
    fed = 0

    @FUZZ
    @given(peer=st.sampled_from(peers), messages=st.lists(strategy, min_size=2, max_size=24))
    def one(peer: Any, messages: list[Any]) -> None:
        nonlocal fed
        feed(peer, messages)  # must not raise
        fed += len(messages)
        runner.spin()

    one()
    return fed


def test_distributor_dispatch_survives_nonsense(job_dir: Path) -> None:
    runner = LoopRunner()
    config = Config(**FAST)
    port = free_port()
    d = Distributor("127.0.0.1", port, config=config)
    node = Node("w1", distributors=[d.address], job_directory=job_dir, config=config)
    nodes = [node]
    try:

        async def setup() -> list[str]:
            await d.start()
            await node.start()
            await async_wait_until(lambda: d.node_alive("w1"))
            handles = [d.enqueue("slow", {"delay": 30}) for _ in range(3)]
            handles += [d.enqueue("echo", {"text": "later"}, after=60)]
            handles += [d.enqueue("echo", {"text": "p"}, period=30)]
            handles += [d.enqueue("echo", {"text": "x"}, node="ghost") for _ in range(2)]
            core = node.core
            assert core is not None
            await async_wait_until(lambda: len(core.jobs) >= 5)  # w1 holds the five for it
            return [h.id for h in handles]

        ids = runner.run(setup())
        sessions = [node.session, d.session]
        strategy = messages_strategy(ids, ["w1", "ghost", "echo", "slow"], sessions)
        real = P.routing_id("w1", node.session)
        peers = [real, b"w1", b"ghost/s", b"\xff\xfe", b"x" * 300]
        fed = fuzz(runner, strategy, peers, d._on_messages)
        assert fed > 1000
        assert not runner.errors.errors, runner.errors.summary()

        # Messages fed as the real node's routing id may leave its session in any state a node
        # could put itself in (it "said" bye, revoked its own jobs, ...): what must survive is
        # the distributor, so a new session of the node must be served at once.
        runner.run(node.close())
        fresh = Node("w1", distributors=[d.address], job_directory=job_dir, config=config)
        nodes.append(fresh)

        async def still_works() -> dict[str, Any]:
            await fresh.start()
            return await asyncio.wait_for(d.enqueue("echo", {"text": "after"}, node="w1"), 15)

        result = runner.run(still_works())
        assert result["echoed"] == "after"
        assert not runner.errors.errors, runner.errors.summary()
    finally:
        for n in nodes:
            runner.run(n.close())
        runner.run(d.stop())
        runner.close()


def test_node_dispatch_survives_nonsense(job_dir: Path) -> None:
    runner = LoopRunner()
    config = Config(**FAST)
    port = free_port()
    node = Node("w1", distributors=[f"127.0.0.1:{port}"], job_directory=job_dir, config=config)
    d = Distributor("127.0.0.1", port, config=config)
    try:
        runner.run(node.start())
        link = node._links[f"127.0.0.1:{port}"]
        ids = [f"job{i}" for i in range(6)]
        strategy = messages_strategy(ids, ["echo", "slow", "nope", "w1"], [node.session])
        fed = fuzz(runner, strategy, [link], node._on_messages)
        assert fed > 1000
        runner.run(asyncio.sleep(0.3))  # the assertion's window: what the fuzz scheduled runs
        assert not runner.errors.errors, runner.errors.summary()

        async def still_works() -> dict[str, Any]:
            await d.start()
            return await asyncio.wait_for(d.enqueue("echo", {"text": "after"}), 15)

        result = runner.run(still_works())
        assert result["echoed"] == "after"
        assert not runner.errors.errors, runner.errors.summary()
    finally:
        runner.run(node.close())
        runner.run(d.stop())
        runner.close()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_the_schema_refuses_non_finite_times(value: float) -> None:
    wire = [P.JOB, "id", 1, "echo", b"\x80", 0.0, value, None, False, 0, 0.0]
    with pytest.raises(ProtocolError, match="run_at"):
        P.decode_message(wire)
    wire = [P.JOB, "id", 1, "echo", b"\x80", value, 0.0, None, False, 0, 0.0]
    with pytest.raises(ProtocolError, match="delay"):
        P.decode_message(wire)
    wire = [P.JOB, "id", 1, "echo", b"\x80", 0.0, 0.0, value, False, 0, 0.0]
    with pytest.raises(ProtocolError, match="period"):
        P.decode_message(wire)


@pytest.mark.parametrize("period", [0, 0.0, -1.0])
def test_the_schema_refuses_periods_that_would_spin(period: float) -> None:
    with pytest.raises(ProtocolError, match="period"):
        P.decode_message([P.JOB, "id", 1, "echo", b"\x80", 0.0, 0.0, period, False, 0, 0.0])


class FakeDistributor:
    """A raw ROUTER socket standing in for a distributor that sends whatever a test wants."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.linger = 0
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.codec = P.Codec()
        self.peer = b""
        self.received: list[P.Message] = []

    def read(self) -> None:
        while self.sock.poll(0):
            self.peer, frame = self.sock.recv_multipart()
            self.received += self.codec.decode(frame)[0]

    def send(self, messages: list[Any]) -> None:
        self.sock.send_multipart([self.peer, self.codec.encode(messages)])

    def close(self) -> None:
        self.sock.close(linger=0)


async def test_node_fails_a_job_whose_args_do_not_decode(
    job_dir: Path, cleanup: Cleanup, loop_errors: LoopErrors
) -> None:
    fake = FakeDistributor()
    try:
        config = Config(**FAST)
        await start_node(cleanup, "w1", f"127.0.0.1:{fake.port}", job_dir, config)

        def hellos() -> list[P.Hello]:
            fake.read()
            return [m for m in fake.received if isinstance(m, P.Hello)]

        await async_wait_until(lambda: bool(hellos()), 10)
        fake.send(
            [
                P.Welcome(
                    P.PROTOCOL_VERSION, "fake", "s", 1.0, hellos()[-1].sent_at, hellos()[-1].session
                ),
                P.Job("bad-sync", 1, "echo", b"\xc1", 0.0, 0.0, None, False, 0, 0.0),
                P.Job("bad-async", 1, "slow", b"\x93\x01\x02\x03", 0.0, 0.0, None, False, 0, 0.0),
                P.Job("bad-deferred", 1, "echo", b"\x81\xa1k", 0.0, 0.0, None, True, 0, 0.0),
            ]
        )

        def syncs() -> list[P.Sync]:
            fake.read()
            return [m for m in fake.received if isinstance(m, P.Sync)]

        await async_wait_until(lambda: bool(syncs()), 5)
        fake.send([P.SyncReply(syncs()[-1].sync_id, [], True)])

        def failed() -> set[str]:
            fake.read()
            return {
                m.id for m in fake.received if isinstance(m, P.Feedback) and m.outcome == P.FAILURE
            }

        await async_wait_until(
            lambda: failed() == {"bad-sync", "bad-async", "bad-deferred"},
            5,
            message=f"error feedback for {failed()} only",
        )
        assert not loop_errors.errors, loop_errors.summary()
    finally:
        fake.close()
