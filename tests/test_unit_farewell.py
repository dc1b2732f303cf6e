"""The bye of a stopping distributor and the results a node keeps, on the cores alone.

A node may start a job of a distributor's session only under that distributor's lease. When the
distributor stops (its application exits after a drain) it says bye: the node takes the jobs as
its own, answers with a bye, and its outcomes, which nobody will hear of, go to its result store.
Outcomes a silent or restarted distributor never acknowledged go there too (issue 18).
"""

from __future__ import annotations

from typing import Any

from reactor import Config
from reactor.core.node import NodeCore
from reactor.jobs import record as R
from reactor.wire import protocol as P
from tests.fake_port import RecordingPort

D = "127.0.0.1:5000"


def _core(port: RecordingPort, *, keeps_results: bool = True) -> NodeCore:
    core = NodeCore(
        port,
        name="n",
        session="ns",
        links=[D],
        config=Config(heartbeat_interval=0.2, heartbeat_timeout=1.0),
        capacity=4,
        job_names=["j"],
        durable=False,
        where="",
    )
    core.keeps_results = keeps_results
    core.started = True
    return core


def _welcome(core: NodeCore, session: str, now: float) -> None:
    core.on_messages(D, [P.Welcome(P.PROTOCOL_VERSION, D, session, 0.2, now, "ns")], now, now)


def _job(job_id: str) -> P.Job:
    return P.Job(job_id, 1, "j", P.pack_args({}), 0.0, 0.0, None, False, 0, 1.0)


def _run_all(core: NodeCore, now: float) -> list[str]:
    ran = []
    while (started := core.start_next(now, now)) is not None:
        job, _ = started
        ran.append(job.id)
        core.finished(job, _done(), now, now)
    return ran


def _done() -> Any:
    from reactor.jobs.outcome import Attempt, Outcome

    return Attempt(Outcome.DONE, {"ok": True}, None)


def test_a_job_held_for_a_sync_that_never_comes_runs_after_the_bye() -> None:
    port = RecordingPort()
    core = _core(port)
    _welcome(core, "ds", 0.0)
    core.on_messages(D, [_job("a")], 0.01, 0.01)
    assert _run_all(core, 0.02) == []  # not synced: held
    port.sent.clear()
    core.on_messages(D, [P.Bye("ds")], 0.03, 0.03)
    assert [m for m in port.sent if type(m) is P.Bye] == [P.Bye("ns")]  # the answer
    assert _run_all(core, 0.04) == ["a"]
    # Its outcome has nobody to go to: kept in the result store, once, and forgotten here.
    assert [(name, m[P.FEEDBACK_ID], m[P.FEEDBACK_FINAL]) for name, m in port.kept] == [
        ("j", "a", True)
    ]
    assert "a" not in core.jobs


def test_a_bye_of_another_session_changes_nothing() -> None:
    port = RecordingPort()
    core = _core(port)
    _welcome(core, "ds", 0.0)
    core.on_messages(D, [_job("a")], 0.01, 0.01)
    core.on_messages(D, [P.Bye("old-session")], 0.02, 0.02)
    assert _run_all(core, 0.03) == [] and not any(type(m) is P.Bye for m in port.sent)


def test_a_final_outcome_is_written_through_at_once_and_kept_once() -> None:
    """Kept as it ends, not when the lease lapses: a node killed in between (its distributor
    already gone) took the only copy with it (the nemesis found it). The distributor's own
    write overwrites it; the node's is SET NX."""
    port = RecordingPort()
    core = _core(port)
    _welcome(core, "ds", 0.0)
    core.on_messages(D, [P.SyncReply(1, [], True)], 0.0, 0.0)
    core.on_messages(D, [_job("a")], 0.01, 0.01)
    assert _run_all(core, 0.02) == ["a"]
    assert [m[P.FEEDBACK_ID] for _, m in port.kept] == ["a"]  # at once
    assert core.jobs["a"].phase == R.DONE  # the final feedback still awaits its ack
    for step in range(1, 20):  # silence: the lease lapses; nothing is kept twice
        core.tick(0.02 + 0.2 * step)
    assert [m[P.FEEDBACK_ID] for _, m in port.kept] == ["a"]
    _welcome(core, "ds2", 4.5)  # a restarted distributor: the old feedback is dropped
    assert [m[P.FEEDBACK_ID] for _, m in port.kept] == ["a"]


def test_without_a_result_store_nothing_is_kept() -> None:
    port = RecordingPort()
    core = _core(port, keeps_results=False)
    _welcome(core, "ds", 0.0)
    core.on_messages(D, [_job("a")], 0.01, 0.01)
    core.on_messages(D, [P.Bye("ds")], 0.02, 0.02)
    assert _run_all(core, 0.03) == ["a"] and port.kept == []
