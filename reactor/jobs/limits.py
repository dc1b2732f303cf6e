"""Flow-control options (issue 20): concurrency and rate limits and fairness keys, their checks,
and the claims a job with limits makes before it starts.

A job's limits come from two places: its ``@job(concurrency=, rate_limit=)`` (per job name, known
where it runs) and its enqueue (``concurrency_key=``/``concurrency_limit=``,
``rate_key=``/``rate_limit=``, ``fair_key=``, carried on the wire as one list). A start needs
every claim granted at once; see :mod:`reactor.core.limits`.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, TypedDict

from reactor.errors import ConfigError
from reactor.wire import protocol as P

#: Seconds per window unit of a rate limit string.
UNITS = {"s": 1, "m": 60, "h": 3600}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*\Z")

#: Claim kinds: a concurrency slot, a rate-limit start.
SLOT = "c"
START = "r"


class FlowOptions(TypedDict, total=False):
    """The flow-control keywords of an enqueue (``**flow`` of ``JR.enqueue`` and
    ``Distributor.enqueue``): ``concurrency_key`` with ``concurrency_limit`` (at most that many
    running at once with the key), ``rate_key`` with ``rate_limit`` ("N/s", "N/m", "N/h"),
    and ``fair_key`` (where jobs wait, keys take turns)."""

    concurrency_key: str
    concurrency_limit: int
    rate_key: str
    rate_limit: str
    fair_key: str


class Claim(NamedTuple):
    """One limit a start must pass: ``kind`` SLOT (at most ``limit`` running at once) or START
    (at most ``limit`` starts in any ``per``-second window), on the limit named ``key``."""

    kind: str
    key: str
    limit: int
    per: int


def parse_rate(text: Any, where: str) -> tuple[int, int]:
    """``"N/s"``, ``"N/m"`` or ``"N/h"`` as ``(N, seconds)``.

    Raises:
        ConfigError: not such a string, or N < 1.
    """
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{where} must be 'N/s', 'N/m' or 'N/h' (e.g. '20/s'), not {text!r:.40}")
    count = int(match.group(1))
    if not 1 <= count < 2**31:
        raise ConfigError(f"{where} must allow at least 1 start, not {text!r:.40}")
    return count, UNITS[match.group(2)]


def check_concurrency(value: Any, where: str) -> int:
    """A concurrency limit, a whole number >= 1.

    Raises:
        ConfigError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise ConfigError(f"{where} must be a whole number >= 1, not {value!r:.40}")
    return value


def _check_key(value: Any, where: str) -> str:
    if type(value) is not str or not 0 < len(value) <= P.MAX_LIMIT_KEY_LEN:
        raise ConfigError(
            f"{where} must be a non-empty string of at most {P.MAX_LIMIT_KEY_LEN} characters, "
            f"not {value!r:.40}"
        )
    if not value.isprintable():
        raise ConfigError(f"{where} must be printable, not {value!r:.40}")
    return value


def limits_wire(
    concurrency_key: Any, concurrency_limit: Any, rate_key: Any, rate_limit: Any, fair_key: Any
) -> list[Any] | None:
    """The JOB message's ``limits`` field for an enqueue's limit options (None: none given).

    Raises:
        ConfigError: a key without its limit (or the reverse), a bad key or a bad limit.
    """
    if concurrency_key is None and rate_key is None and fair_key is None:
        if concurrency_limit is not None or rate_limit is not None:
            given = "concurrency_limit=" if concurrency_limit is not None else "rate_limit="
            raise ConfigError(f"{given} needs its key ({given[:-7]}_key=) at enqueue")
        return None
    climit = rcount = rper = 0
    if concurrency_key is not None or concurrency_limit is not None:
        if concurrency_key is None or concurrency_limit is None:
            raise ConfigError("give concurrency_key= and concurrency_limit= together")
        _check_key(concurrency_key, "concurrency_key=")
        climit = check_concurrency(concurrency_limit, "concurrency_limit=")
    if rate_key is not None or rate_limit is not None:
        if rate_key is None or rate_limit is None:
            raise ConfigError("give rate_key= and rate_limit= together")
        _check_key(rate_key, "rate_key=")
        rcount, rper = parse_rate(rate_limit, "rate_limit=")
    if fair_key is not None:
        _check_key(fair_key, "fair_key=")
    return [concurrency_key, climit, rate_key, rcount, rper, fair_key]


def name_claims(name: str, concurrency: int | None, rate: tuple[int, int] | None) -> list[Claim]:
    """The claims of a job name's ``@job`` limits (empty: none)."""
    claims = []
    if concurrency is not None:
        claims.append(Claim(SLOT, f"name:{name}", concurrency, 0))
    if rate is not None:
        claims.append(Claim(START, f"name:{name}", rate[0], rate[1]))
    return claims


def claims_of(base: list[Claim], limits: list[Any] | None) -> list[Claim]:
    """Every claim of one job: its name's (``base``) and its enqueue's ``limits`` field."""
    if limits is None:
        return base
    ckey, climit, rkey, rcount, rper, _ = limits
    claims = list(base)
    if ckey is not None:
        claims.append(Claim(SLOT, f"key:{ckey}", climit, 0))
    if rkey is not None:
        claims.append(Claim(START, f"key:{rkey}", rcount, rper))
    return claims


def fair_key(limits: list[Any] | None) -> str | None:
    """The job's ``fair_key=`` (None: none)."""
    return None if limits is None else limits[5]


#: How a rate window's length reads.
_PER = {1: "second", 60: "minute", 3600: "hour"}


def describe_limits(wire: Any) -> str | None:
    """An enqueue's limits (a record's ``limits``, the JOB message's list) as one line for
    people: what a queued job over one of them waits for (the monitor's ``show``, the
    dashboard's job page). None: none, or not such a list."""
    if not isinstance(wire, list | tuple) or len(wire) < 6:
        return None
    ckey, climit, rkey, rcount, rper, fair = wire[:6]
    parts = []
    if ckey is not None:
        parts.append(f"concurrency {ckey}: at most {climit} running")
    if rkey is not None:
        parts.append(f"rate {rkey}: at most {rcount} per {_PER.get(rper, f'{rper} s')}")
    if fair is not None:
        parts.append(f"fair key {fair}")
    return "; ".join(parts) or None
