"""One nemesis run: start the cluster, play the schedule, heal, wait for quiescence, check.

Everything it does is printed as it happens, prefixed with the seconds since the run began, so
a failing run's output and ``--seed`` together say what happened and replay it.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from tests.nemesis import ledger
from tests.nemesis.checker import DEATHS, Checker, Death, excused
from tests.nemesis.cluster import Cluster
from tests.nemesis.schedule import KINDS, Fault, Schedule
from tests.nemesis.watcher import StoreWatcher, read_store

#: How long the outcome count must stay unchanged before the check (late duplicates show up).
STABLE_FOR = 3.0
#: How long jobs the contract lets memory lose may still bring an outcome before the check.
EXCUSED_GRACE = 20.0


class Nemesis:
    """A run of ``minutes`` of faults drawn from ``seed`` (see the package docstring)."""

    def __init__(
        self,
        *,
        seed: int,
        minutes: float,
        apps: int = 3,
        nodes: int = 4,
        rate: float = 3.0,
        quiesce: float = 120.0,
        keep: bool = False,
        kinds: list[str] | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.seed = seed
        self.minutes = minutes
        self.seconds = minutes * 60.0
        self.quiesce = quiesce
        self.keep = keep
        self._say = say
        self.dir = Path(tempfile.mkdtemp(prefix="reactor-nemesis-"))
        self.cluster = Cluster(
            self.dir, apps=apps, nodes=nodes, seed=seed, rate=rate,
            lifetime=self.seconds + quiesce + 600.0,
        )  # fmt: skip
        c = self.cluster
        self.schedule = Schedule(seed, self.seconds, c.app_names, c.node_names, kinds)
        self.deaths: list[Death] = []
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.store: dict[str, str] = {}
        self.watcher = StoreWatcher(self.cluster.redis.client)

    def say(self, text: str) -> None:
        self._say(f"[nemesis {time.monotonic() - self.t0:7.2f}s] {text}")

    # -- the run ----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Play the run and return its numbers (the JSON line of ``python -m tests.nemesis``)."""
        started = time.monotonic()
        try:
            self._prologue()
            self._play()
            healed = time.monotonic()
            self._heal()
            self._quiesce()
            result = self._check()
            result["quiescence_seconds"] = round(time.monotonic() - healed, 1)
        finally:
            self.watcher.stop()
            self.cluster.close()
            if self.keep:
                self._say(f"[nemesis] kept {self.dir}")
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
        result["elapsed_seconds"] = round(time.monotonic() - started, 1)
        return result

    def _prologue(self) -> None:
        c = self.cluster
        self._say(
            f"[nemesis] seed {self.seed}, {self.minutes} min, apps {c.app_names}, nodes "
            f"{c.node_names} (memory: {sorted(c.memory_nodes)}), "
            f"{len(self.schedule.faults)} faults:"
        )
        for line in self.schedule.lines():
            self._say(line)
        c.start()
        self.watcher.start()
        self.t0 = time.monotonic()
        self.say(f"started: redis {c.redis.url}, dir {self.dir}")
        self._wait(self._all_apps_up, 60.0, "every application started")

    def _all_apps_up(self) -> bool:
        self._supervise()
        return ledger.read(self.dir).incarnations >= len(self.cluster.app_names)

    def _play(self) -> None:
        events: list[tuple[float, int, Fault]] = []
        for fault in self.schedule.faults:
            events.append((fault.at, 0, fault))
            if fault.duration:
                events.append((fault.ends, 1, fault))
        events.sort(key=lambda e: (e[0], e[1]))
        self.t0 = t0 = time.monotonic()  # printed offsets are the schedule's from here on
        self.t0_wall = time.time()
        while True:
            now = time.monotonic() - t0
            while events and events[0][0] <= now and events[0][0] < self.seconds:
                _, end, fault = events.pop(0)
                self._apply(fault, end=bool(end))
            if now >= self.seconds:
                return
            self._supervise()
            nxt = events[0][0] if events else self.seconds
            time.sleep(max(0.0, min(0.2, nxt - now)))  # pacing the schedule, not waiting for it

    def _supervise(self) -> None:
        for line in self.cluster.supervise():
            self.say(line)

    def _apply(self, fault: Fault, *, end: bool) -> None:
        c = self.cluster
        target = fault.target
        begin: dict[str, Callable[[], object]] = {
            "node_kill": lambda: c.kill(target),
            "app_kill": lambda: c.kill(target),
            "node_term": lambda: c.terminate(target),
            "app_term": lambda: c.terminate(target),
            "node_stop": lambda: c.freeze(target),
            "app_stop": lambda: c.freeze(target),
            "cut": lambda: c.proxies[target].cut(half_open=fault.variant == "half_open"),
            "partition": lambda: c.proxies[target].blackhole(),
            "redis_restart": lambda: c.redis_down(fault.variant),
        }
        finish: dict[str, Callable[[], object]] = {
            "node_stop": lambda: c.thaw(target),
            "app_stop": lambda: c.thaw(target),
            "partition": lambda: c.proxies[target].heal(),
            "redis_restart": c.redis_up,
        }
        if end:
            note = finish[fault.kind]() if fault.kind in finish else c.restart(target)
            self.say(f"end   {fault.describe()}{note or ''}")
            return
        if fault.kind in DEATHS:
            self.deaths.append(Death(time.time(), fault.kind, target))
        result = begin[fault.kind]()
        extra = f" ({result} connections)" if fault.kind == "cut" else ""
        self.say(f"begin {fault.describe()}{extra}")

    # -- the end ----------------------------------------------------------------------------------

    def _heal(self) -> None:
        self.cluster.stop_enqueueing()
        self.say("faults over: enqueueing stops, everything heals")
        for line in self.cluster.heal():
            self.say(line)

    def _pending(self) -> tuple[list[str], ledger.Ledgers]:
        """The accepted jobs without an outcome yet, and the ledgers read for it."""
        self._supervise()
        seen = ledger.read(self.dir)
        missing = [j for j in seen.accepted if j not in seen.callbacks and j not in self.store]
        try:
            with self.cluster.redis.client() as client:
                self.store.update(read_store(client, missing))
        except (RedisError, OSError) as exc:
            self.say(f"result store not readable yet: {exc!r}")
        return [j for j in missing if j not in self.store], seen

    def _excusable(self, job_ids: list[str], seen: ledger.Ledgers) -> bool:
        memory = self.cluster.memory_nodes
        return all(
            excused(seen.accepted[j], seen.runs.get(j, []), self.deaths, memory) for j in job_ids
        )

    def _quiesce(self) -> None:
        """Wait until every accepted job has an outcome, or only jobs the contract lets memory
        lose are left (they get ``EXCUSED_GRACE`` seconds), or the deadline."""
        left: list[str] = []
        excusable_since: list[float] = []

        def settled() -> bool:
            pending, seen = self._pending()
            left[:] = pending
            if not pending:
                return True
            if not self._excusable(pending, seen):
                excusable_since.clear()
                return False
            excusable_since[:] = excusable_since or [time.monotonic()]
            return time.monotonic() - excusable_since[0] >= EXCUSED_GRACE

        if not self._wait(settled, self.quiesce, "every accepted job has an outcome"):
            self.say(f"{len(left)} jobs without an outcome, e.g. {left[:5]}")
        elif left:
            self.say(f"{len(left)} jobs held only in memory by dead processes, e.g. {left[:5]}")
        counts: list[int] = []

        def stable() -> bool:  # no outcome arrived for STABLE_FOR seconds
            counts.append(ledger.read(self.dir).outcome_count())
            window = int(STABLE_FOR / 0.25)
            return len(counts) > window and counts[-1] == counts[-1 - window]

        self._wait(stable, 30.0, "no more outcomes arrive", interval=0.25)

    def _wait(
        self, predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5
    ) -> bool:
        """Poll ``predicate`` until true or ``timeout``; says how long it took."""
        began = time.monotonic()
        while not predicate():
            if time.monotonic() - began > timeout:
                self.say(f"gave up waiting after {timeout:.0f}s: {what}")
                return False
            time.sleep(interval)
        self.say(f"{what} (after {time.monotonic() - began:.1f}s)")
        return True

    def _mentions(self, job_id: str) -> str:
        """Every log line that names ``job_id`` (applications and nodes)."""
        found = []
        for path in sorted(self.dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()
            found += [f"  {path.stem}: {line}" for line in lines if job_id in line]
        return "\n".join(found[:40]) or f"  (no log line names {job_id})"

    def _check(self) -> dict[str, Any]:
        seen = ledger.read(self.dir)
        with self.cluster.redis.client() as client:
            self.store.update(read_store(client, list(seen.accepted)))
        self.watcher.stop()
        published = self.watcher.kinds()
        memory = self.cluster.memory_nodes
        verdict = Checker(seen, self.store, published, self.deaths, memory, self.t0_wall).check()
        for line in verdict.examples:
            self.say(line)
            self._say(self._mentions(line.split(": ", 1)[1].split()[0]))
        if not verdict.clean:
            self._say(self.cluster.tail([*self.cluster.app_names, *self.cluster.node_names]))
        return {
            "seed": self.seed,
            "minutes": self.minutes,
            **verdict.numbers(),
            "faults": len(self.schedule.faults),
            "refused": seen.refused,
            "runs": sum(len(r) for r in seen.runs.values()),
            "incarnations": seen.incarnations,
            "orphan_callbacks": seen.orphan_callbacks,
            "supervisor_restarts": self.cluster.supervisor_restarts,
            "store_resubscribed": self.watcher.resubscribed,
            "clean": verdict.clean,
            **({"kinds": self.schedule.kinds} if self.schedule.kinds != list(KINDS) else {}),
        }
