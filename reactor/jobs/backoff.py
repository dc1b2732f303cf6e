"""Retry backoff policies: how long a node waits before retrying a failed attempt.

A :class:`Backoff` is a small frozen value: it travels in a job message and is stored with the job
record as a short msgpack-able list (:meth:`Backoff.to_wire`, :meth:`Backoff.from_wire`).
"""

from __future__ import annotations

import math
import random
import reprlib
from dataclasses import dataclass
from typing import Any, Final, Literal

from reactor.errors import ConfigError, ProtocolError

Kind = Literal["linear", "exponential"]

#: The wire tags of the two kinds, first item of :meth:`Backoff.to_wire`.
LINEAR: Final = "linear"
EXPONENTIAL: Final = "exponential"

#: JobReactor's ``retry_multiplier`` default: 5 s, 10 s, 15 s, ... between attempts.
DEFAULT_MULTIPLIER = 5.0


def _number(owner: str, name: str, value: Any, *, minimum: float = 0.0) -> float:
    """``value`` as a finite float no smaller than ``minimum``, or a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{owner}: {name} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise ConfigError(f"{owner}: {name} must be a finite number >= {minimum:g}, not {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class Backoff:
    """A retry delay rule; build one with :meth:`linear` or :meth:`exponential`.

    Retry ``k`` is the k-th retry (``k = 1`` after the first failed attempt), which is also the
    number of attempts made so far: JobReactor's ``attempt`` counter at the time of the failure.

    Attributes:
        kind: ``"linear"`` or ``"exponential"``.
        multiplier: linear only: the wait before retry ``k`` is ``k * multiplier`` seconds.
        base: exponential only: the wait before the first retry, before jitter.
        factor: exponential only: each wait is ``factor`` times the previous one (>= 1).
        max_delay: exponential only: the cap on a wait, before jitter.
        jitter: exponential only: the wait is multiplied by a random factor in
            ``[1 - jitter, 1 + jitter]`` (0 <= jitter <= 1), so retries of many jobs that failed
            together spread out; a jittered wait may exceed ``max_delay`` by that factor.
    """

    kind: Kind
    multiplier: float = 0.0
    base: float = 0.0
    factor: float = 1.0
    max_delay: float = 0.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind == LINEAR:
            _number("Backoff.linear", "multiplier", self.multiplier)
        elif self.kind == EXPONENTIAL:
            owner = "Backoff.exponential"
            _number(owner, "base", self.base)
            _number(owner, "factor", self.factor, minimum=1.0)
            _number(owner, "max_delay", self.max_delay)
            jitter = _number(owner, "jitter", self.jitter)
            if jitter > 1.0:
                raise ConfigError(f"{owner}: jitter must be between 0 and 1, not {jitter!r}")
        else:
            raise ConfigError(
                f"Backoff kind must be {LINEAR!r} or {EXPONENTIAL!r}, not {self.kind!r}; "
                "use Backoff.linear(...) or Backoff.exponential(...)"
            )

    @classmethod
    def linear(cls, multiplier: float = DEFAULT_MULTIPLIER) -> Backoff:
        """JobReactor's rule and the default: wait ``k * multiplier`` seconds before retry ``k``.

        Raises:
            ConfigError: ``multiplier`` is not a finite number >= 0.
        """
        return cls(LINEAR, multiplier=_number("Backoff.linear", "multiplier", multiplier))

    @classmethod
    def exponential(
        cls,
        base: float = 1.0,
        factor: float = 2.0,
        max_delay: float = 300.0,
        jitter: float = 0.1,
    ) -> Backoff:
        """Wait ``min(max_delay, base * factor ** (k - 1))`` seconds, jittered, before retry ``k``.

        Raises:
            ConfigError: a parameter is not a finite number, ``base`` or ``max_delay`` is
                negative, ``factor`` is below 1, or ``jitter`` is outside [0, 1].
        """
        owner = "Backoff.exponential"
        return cls(
            EXPONENTIAL,
            base=_number(owner, "base", base),
            factor=_number(owner, "factor", factor, minimum=1.0),
            max_delay=_number(owner, "max_delay", max_delay),
            jitter=_number(owner, "jitter", jitter),
        )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry).

        Args:
            attempt: the attempts made so far (>= 1).
            rng: the source of jitter (the module's shared generator when None); pass a seeded
                ``random.Random`` for reproducible runs.

        Raises:
            ValueError: ``attempt`` is not an int >= 1.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be an int >= 1, not {attempt!r}")
        if self.kind == LINEAR:
            return attempt * self.multiplier
        try:
            raw = self.base * self.factor ** (attempt - 1)
        except OverflowError:  # a huge attempt number: the cap applies anyway
            raw = math.inf
        wait = min(self.max_delay, raw)
        if self.jitter:
            low, high = 1.0 - self.jitter, 1.0 + self.jitter
            wait *= rng.uniform(low, high) if rng is not None else random.uniform(low, high)
        return wait

    def to_wire(self) -> list[Any]:
        """A short msgpack-able list: ``["linear", multiplier]`` or
        ``["exponential", base, factor, max_delay, jitter]``."""
        if self.kind == LINEAR:
            return [LINEAR, self.multiplier]
        return [EXPONENTIAL, self.base, self.factor, self.max_delay, self.jitter]

    @classmethod
    def from_wire(cls, value: Any) -> Backoff:
        """The policy :meth:`to_wire` encoded (from a message or a stored record).

        Raises:
            ProtocolError: ``value`` is not a valid encoded policy.
        """
        if not isinstance(value, list | tuple) or not value:
            raise ProtocolError(f"a backoff must be a non-empty list, not {type(value).__name__}")
        kind, *params = value
        try:
            if kind == LINEAR and len(params) == 1:
                return cls.linear(params[0])
            if kind == EXPONENTIAL and len(params) == 4:
                return cls.exponential(*params)
        except ConfigError as exc:
            raise ProtocolError(f"invalid backoff {reprlib.repr(value)}: {exc}") from None
        raise ProtocolError(
            f"invalid backoff {reprlib.repr(value)}: expected [{LINEAR!r}, multiplier] or "
            f"[{EXPONENTIAL!r}, base, factor, max_delay, jitter]"
        )

    def __repr__(self) -> str:
        if self.kind == LINEAR:
            return f"Backoff.linear({self.multiplier!r})"
        return (
            f"Backoff.exponential(base={self.base!r}, factor={self.factor!r}, "
            f"max_delay={self.max_delay!r}, jitter={self.jitter!r})"
        )
