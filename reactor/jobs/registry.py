"""Job definitions: the ``@job`` decorators that mark functions, and the registry a node runs from.

The decorators have no effect beyond the defining module: each appends its definition to a list
in that module's globals, and the loader turns those lists into a fresh :class:`JobRegistry` for
each node. Nothing global is touched at import time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from reactor.errors import ConfigError
from reactor.jobs.backoff import Backoff
from reactor.jobs.limits import Claim, check_concurrency, name_claims, parse_rate

Step = Callable[[dict[str, Any]], Any]
F = TypeVar("F", bound=Step)
Kind = Literal["job", "callback", "errback"]

#: The name of the per-module list the decorators append to.
DEFS_ATTR = "__reactor_defs__"


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job defaults from ``@job(...)``; None means "the node's setting" (or no limit)."""

    max_attempt: int | None = None
    timeout: float | None = None
    backoff: Backoff | None = None
    retry_on: tuple[type[Exception], ...] = ()
    give_up_on: tuple[type[Exception], ...] = ()
    concurrency: int | None = None
    rate: tuple[int, int] | None = None  # (starts, per seconds)


@dataclass(frozen=True, slots=True)
class Definition:
    """One decorated function, as the loader finds it."""

    kind: Kind
    job_name: str
    step_name: str
    fn: Step
    origin: str
    options: JobOptions = JobOptions()


def origin_of(fn: Callable[..., Any]) -> str:
    """Where ``fn`` is defined, as ``path:line`` (its repr when it has no code object)."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(fn)
    return f"{code.co_filename}:{code.co_firstlineno}"


def _exception_types(where: str, name: str, value: Any) -> tuple[type[Exception], ...]:
    """``value`` (an exception class or a tuple of them) as a tuple, or a ConfigError."""
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, Exception)):
            raise ConfigError(
                f"{where}: {name} must be an exception class or a tuple of them, not {t!r}"
            )
    return types


def check_options(
    where: str,
    max_attempt: Any = None,
    timeout: Any = None,
    backoff: Any = None,
    retry_on: Any = (),
    give_up_on: Any = (),
) -> JobOptions:
    """Validate per-job options (``@job`` and, later, enqueue) into a :class:`JobOptions`.

    Args:
        where: how to name the caller in messages, e.g. ``"@job('charge')"``.

    Raises:
        ConfigError: ``max_attempt`` is not a whole number >= 1, ``timeout`` is not a finite
            number > 0, ``backoff`` is not a :class:`~reactor.jobs.backoff.Backoff`, or
            ``retry_on``/``give_up_on`` are not exception classes.
    """
    if max_attempt is not None and (
        isinstance(max_attempt, bool) or not isinstance(max_attempt, int) or max_attempt < 1
    ):
        raise ConfigError(f"{where}: max_attempt must be a whole number >= 1, not {max_attempt!r}")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigError(
                f"{where}: timeout must be a number of seconds, not {type(timeout).__name__}"
            )
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(f"{where}: timeout must be a finite number > 0, not {timeout!r}")
        timeout = float(timeout)
    if backoff is not None and not isinstance(backoff, Backoff):
        raise ConfigError(
            f"{where}: backoff must be Backoff.linear(...) or Backoff.exponential(...), "
            f"not {type(backoff).__name__}"
        )
    return JobOptions(
        max_attempt,
        timeout,
        backoff,
        _exception_types(where, "retry_on", retry_on),
        _exception_types(where, "give_up_on", give_up_on),
    )


def _marker(kind: Kind, job_name: str, step_name: str, options: JobOptions) -> Callable[[F], F]:
    if not isinstance(job_name, str) or not job_name:
        raise TypeError(f"@{kind}: the job name must be a non-empty string, not {job_name!r}")

    def mark(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@{kind}({job_name!r}) must decorate a function")
        defs = getattr(fn, "__globals__", {}).setdefault(DEFS_ATTR, [])
        defs.append(
            Definition(kind, job_name, step_name or fn.__name__, fn, origin_of(fn), options)
        )
        return fn

    return mark


def job(
    name: str,
    *,
    max_attempt: int | None = None,
    timeout: float | None = None,
    backoff: Backoff | None = None,
    retry_on: type[Exception] | tuple[type[Exception], ...] = (),
    give_up_on: type[Exception] | tuple[type[Exception], ...] = (),
    concurrency: int | None = None,
    rate_limit: str | None = None,
) -> Callable[[F], F]:
    """Define the job ``name``; the function (``def`` or ``async def``) gets the args dict.

    Args:
        name: the job's name, unique across the job directory.
        max_attempt: how many times a failing job runs at most (default: the node's
            ``config["max_attempt"]``); an enqueue may override it.
        timeout: seconds an attempt may take before it fails with ``TimeLimitExceeded``
            (default: no limit); an enqueue may override it.
        backoff: the wait between attempts (default:
            ``Backoff.linear(config["retry_multiplier"])``, JobReactor's rule).
        retry_on: when given, only these exceptions (and their subclasses) are retried; any
            other fails the job at once.
        give_up_on: these exceptions fail the job at once, without retries (they win over
            ``retry_on``).
        concurrency: at most this many attempts of this job name run at once (cluster-wide
            with a shared ``limits_store``; see docs/guides/flow-control.md).
        rate_limit: at most N starts in any window, ``"N/s"``, ``"N/m"`` or ``"N/h"``.

    Raises:
        ConfigError: an option is invalid (at decoration time, so the job file fails to load).
    """
    where = f"@job({name!r})"
    options = check_options(where, max_attempt, timeout, backoff, retry_on, give_up_on)
    if concurrency is not None or rate_limit is not None:
        options = replace(
            options,
            concurrency=None
            if concurrency is None
            else check_concurrency(concurrency, f"{where}: concurrency"),
            rate=None if rate_limit is None else parse_rate(rate_limit, f"{where}: rate_limit"),
        )
    return _marker("job", name, name, options)


def job_callback(name: str, callback_name: str = "") -> Callable[[F], F]:
    """Add a callback to job ``name``; callbacks run after the job, in definition order."""
    return _marker("callback", name, callback_name, JobOptions())


def job_errback(name: str, errback_name: str = "") -> Callable[[F], F]:
    """Add an errback to job ``name``; errbacks run after a failed attempt (``args["error"]``)."""
    return _marker("errback", name, errback_name, JobOptions())


@dataclass(slots=True)
class JobEntry:
    """A job's body with its callbacks and errbacks, in the order they run, and its options.

    ``max_attempt``, ``timeout`` and ``backoff`` are the ``@job`` defaults; None means the node's
    setting (``config["max_attempt"]``, no time limit, ``Backoff.linear(retry_multiplier)``).
    ``retry_on``/``give_up_on`` narrow which exceptions are retried (empty: every one is).
    """

    name: str
    body: Step
    callbacks: list[Step] = field(default_factory=list)
    errbacks: list[Step] = field(default_factory=list)
    is_async: bool = False
    max_attempt: int | None = None
    timeout: float | None = None
    backoff: Backoff | None = None
    origin: str = ""
    retry_on: tuple[type[Exception], ...] = ()
    give_up_on: tuple[type[Exception], ...] = ()
    #: The claims of its ``@job(concurrency=, rate_limit=)`` (empty: none; issue 20).
    claims: list[Claim] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self.is_async = any(
            inspect.iscoroutinefunction(f) for f in (self.body, *self.callbacks, *self.errbacks)
        )

    @property
    def steps(self) -> list[Step]:
        """The job body followed by its callbacks."""
        return [self.body, *self.callbacks]


class JobRegistry:
    """The jobs one node knows, by name."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobEntry] = {}

    def define(
        self,
        name: str,
        body: Step,
        *,
        max_attempt: int | None = None,
        timeout: float | None = None,
        backoff: Backoff | None = None,
        origin: str = "",
        retry_on: type[Exception] | tuple[type[Exception], ...] = (),
        give_up_on: type[Exception] | tuple[type[Exception], ...] = (),
        concurrency: int | None = None,
        rate: tuple[int, int] | None = None,
    ) -> JobEntry:
        """Define the job ``name``, once.

        Raises:
            ConfigError: ``name`` is already defined (the message names both places), or an
                option is invalid.
        """
        origin = origin or origin_of(body)
        previous = self._jobs.get(name)
        if previous is not None:
            raise ConfigError(
                f"job {name!r} is defined twice: at {previous.origin} and at {origin}; "
                "job names must be unique across the job directory (rename or remove one)"
            )
        options = check_options(
            f"job {name!r}", max_attempt, timeout, backoff, retry_on, give_up_on
        )
        entry = JobEntry(
            name,
            body,
            max_attempt=options.max_attempt,
            timeout=options.timeout,
            backoff=options.backoff,
            origin=origin,
            retry_on=options.retry_on,
            give_up_on=options.give_up_on,
            claims=name_claims(name, concurrency, rate),
        )
        self._jobs[name] = entry
        return entry

    def add_callback(self, name: str, fn: Step) -> None:
        """Append a callback to an already defined job."""
        self._entry_for(name, "callback").callbacks.append(fn)
        self._jobs[name]._refresh()

    def add_errback(self, name: str, fn: Step) -> None:
        """Append an errback to an already defined job."""
        self._entry_for(name, "errback").errbacks.append(fn)
        self._jobs[name]._refresh()

    def _entry_for(self, name: str, what: str) -> JobEntry:
        entry = self._jobs.get(name)
        if entry is None:
            raise ConfigError(
                f"a {what} for job {name!r} comes before any @job({name!r}); define the job first"
            )
        return entry

    def apply(self, definitions: Iterable[Definition]) -> None:
        """Apply decorator definitions in order (what the loader found)."""
        for d in definitions:
            if d.kind == "job":
                o = d.options
                self.define(
                    d.job_name,
                    d.fn,
                    max_attempt=o.max_attempt,
                    timeout=o.timeout,
                    backoff=o.backoff,
                    origin=d.origin,
                    retry_on=o.retry_on,
                    give_up_on=o.give_up_on,
                    concurrency=o.concurrency,
                    rate=o.rate,
                )
            elif d.kind == "callback":
                self.add_callback(d.job_name, d.fn)
            else:
                self.add_errback(d.job_name, d.fn)

    def get(self, name: str) -> JobEntry | None:
        """The entry for ``name``, or None when this node does not know it."""
        return self._jobs.get(name)

    def names(self) -> list[str]:
        """Every job name, sorted."""
        return sorted(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)
