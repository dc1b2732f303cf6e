"""``python -m tests.nemesis --minutes M --seed S``: one run; its last line is one JSON object.

Exit code 0 when the run is clean, 1 when the checker found a violation.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from tests.nemesis.runner import Nemesis
from tests.nemesis.schedule import KINDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nemesis", description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0, help="how long faults are drawn")
    parser.add_argument("--seed", type=int, default=1, help="the schedule's seed (replays it)")
    parser.add_argument("--apps", type=int, default=3, help="application processes")
    parser.add_argument("--nodes", type=int, default=4, help="node processes (every other: Redis)")
    parser.add_argument("--rate", type=float, default=3.0, help="jobs per second per application")
    parser.add_argument("--quiesce", type=float, default=120.0, help="seconds to wait for outcomes")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs)")
    parser.add_argument(
        "--kinds", help=f"comma-separated fault kinds to draw (default: all of {','.join(KINDS)})"
    )
    opts = parser.parse_args(argv)
    unknown = set(opts.kinds.split(",") if opts.kinds else ()) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; valid: {', '.join(KINDS)}")
    # SIGTERM (a test's timeout) unwinds the run, which kills what it started and cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = Nemesis(
        seed=opts.seed, minutes=opts.minutes, apps=opts.apps, nodes=opts.nodes, rate=opts.rate,
        quiesce=opts.quiesce, keep=opts.keep, kinds=opts.kinds.split(",") if opts.kinds else None,
        say=lambda line: print(line, flush=True),
    ).run()  # fmt: skip
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
