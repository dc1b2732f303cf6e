"""The nemesis checker on hand-written ledgers: each violation it must see, and what it excuses."""

from __future__ import annotations

from pathlib import Path

from tests.nemesis import ledger
from tests.nemesis.checker import Checker, Death, Verdict
from tests.nemesis.schedule import Schedule

MEMORY = {"n0"}


def _ledgers(tmp_path: Path, app: str, runs: str, node: str = "n1") -> ledger.Ledgers:
    (tmp_path / "app-a0.ledger").write_text(app)
    (tmp_path / f"runs-{node}.ledger").write_text(runs)
    return ledger.read(tmp_path)


def _check(
    tmp_path: Path,
    app: str,
    runs: str,
    *,
    node: str = "n1",
    store: dict[str, str] | None = None,
    published: dict[str, list[str]] | None = None,
    deaths: list[Death] | None = None,
) -> Verdict:
    seen = _ledgers(tmp_path, app, runs, node)
    return Checker(seen, store or {}, published or {}, deaths or [], MEMORY).check()


ACCEPTED = "incarnation 1 1.0\naccepted j1 a0-1-1 now - 10.0\n"
OK_RUN = "start j1 n1 1 7 11.0\nok j1 n1 1 7 11.5\n"


def test_a_job_with_one_caused_outcome_is_clean(tmp_path: Path) -> None:
    v = _check(tmp_path, ACCEPTED + "outcome a0-1-1 success - 12.0\n", OK_RUN)
    assert v.clean and v.outcomes == 1 and v.lost == 0


def test_an_outcome_kept_in_the_store_counts(tmp_path: Path) -> None:
    v = _check(tmp_path, ACCEPTED, OK_RUN, store={"j1": "success:-"})
    assert v.clean and v.outcomes_from_store_only == 1


def test_a_job_without_outcome_is_lost(tmp_path: Path) -> None:
    v = _check(tmp_path, ACCEPTED, OK_RUN)
    assert v.lost == 1 and not v.clean


def test_two_callbacks_or_two_kinds_are_duplicates(tmp_path: Path) -> None:
    twice = ACCEPTED + "outcome a0-1-1 success - 12.0\noutcome a0-1-1 success - 12.1\n"
    assert _check(tmp_path, twice, OK_RUN).duplicate_outcomes == 1
    heard = ACCEPTED + "outcome a0-1-1 success - 12.0\n"
    published = {"j1": ["success", "error"]}
    assert _check(tmp_path, heard, OK_RUN, published=published).duplicate_outcomes == 1


def test_outcomes_nobody_caused_are_phantoms(tmp_path: Path) -> None:
    failed = "start j1 n1 1 7 11.0\nfail j1 n1 1 7 11.5\n"
    assert _check(tmp_path, ACCEPTED + "outcome a0-1-1 success - 12\n", failed).phantom_outcomes
    assert _check(tmp_path, ACCEPTED + "outcome a0-1-1 error X 12\n", OK_RUN).phantom_outcomes
    crashed = "start j1 n1 1 7 11.0\n"  # the node died in the body: an error it caused
    assert _check(tmp_path, ACCEPTED + "outcome a0-1-1 error X 12\n", crashed).clean


def test_a_run_on_the_excluded_node_is_a_violation(tmp_path: Path) -> None:
    app = "accepted j1 a0-1-1 now n1 10.0\noutcome a0-1-1 success - 12.0\n"
    assert _check(tmp_path, app, OK_RUN).not_node_violations == 1


def test_a_job_only_dead_memory_held_is_excused(tmp_path: Path) -> None:
    deaths = [Death(20.0, "app_kill", "a0"), Death(21.0, "node_kill", "n0")]
    run = "start j1 n0 1 7 11.0\n"
    v = _check(tmp_path, ACCEPTED, run, node="n0", deaths=deaths)
    assert v.lost == 0 and v.lost_memory_only == 1
    (tmp_path / "redis").mkdir()
    redis_run = _check(tmp_path / "redis", ACCEPTED, OK_RUN, deaths=deaths)  # last run: Redis
    assert redis_run.lost == 1


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    seen = _ledgers(tmp_path, ACCEPTED + "accepted j2 a0-1-2 no", OK_RUN + "ok j1 n1")
    assert list(seen.accepted) == ["j1"] and len(seen.runs["j1"]) == 2


def test_a_seed_replays_the_same_schedule() -> None:
    apps, nodes = ["a0", "a1"], ["n0", "n1", "n2"]
    first = Schedule(7, 120, apps, nodes).faults
    assert first == Schedule(7, 120, apps, nodes).faults
    assert first != Schedule(8, 120, apps, nodes).faults
    assert {f.kind for f in first} >= {"node_kill", "cut"}
