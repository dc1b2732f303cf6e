"""Replay one simulation seed with the cores' log lines: ``python -m tests.sim.replay SEED``."""

from __future__ import annotations

import logging
import sys

from tests.sim import world as W
from tests.sim.scenario import run_seed, violations


class _SimTime(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.clock: W.Clock | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        record.simtime = self.clock.now if self.clock is not None else 0.0
        return True


def main(argv: list[str]) -> int:
    seed = int(argv[0])
    stamp = _SimTime()
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(stamp)
    handler.setFormatter(logging.Formatter("%(simtime)9.3f %(name)s %(message)s"))
    root = logging.getLogger("reactor")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    clock_init = W.Clock.__init__

    def init(self: W.Clock) -> None:
        clock_init(self)
        stamp.clock = self

    W.Clock.__init__ = init  # type: ignore[method-assign]
    world = run_seed(seed)
    for job_id, run in world.runs.items():
        print(f"{job_id}: runs {run.runs} outcomes {run.outcomes} spec {run.spec}")
    found = violations(world)
    print("\n".join(found) or "no invariant broken")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
