"""Job definitions: the ``@job`` decorators that mark functions, and the registry a node runs from.

The decorators have no effect beyond the defining module: each appends its definition to a list
in that module's globals, and the loader turns those lists into a fresh :class:`JobRegistry` for
each node. Nothing global is touched at import time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from reactor.errors import ConfigError

Step = Callable[[dict[str, Any]], Any]
F = TypeVar("F", bound=Step)
Kind = Literal["job", "callback", "errback"]

#: The name of the per-module list the decorators append to.
DEFS_ATTR = "__reactor_defs__"


@dataclass(frozen=True, slots=True)
class Definition:
    """One decorated function, as the loader finds it."""

    kind: Kind
    job_name: str
    step_name: str
    fn: Step
    origin: str


def _marker(kind: Kind, job_name: str, step_name: str) -> Callable[[F], F]:
    if not isinstance(job_name, str) or not job_name:
        raise TypeError(f"@{kind}: the job name must be a non-empty string, not {job_name!r}")

    def mark(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@{kind}({job_name!r}) must decorate a function")
        origin = f"{getattr(fn, '__code__', None) and fn.__code__.co_filename}"
        defs = getattr(fn, "__globals__", {}).setdefault(DEFS_ATTR, [])
        defs.append(Definition(kind, job_name, step_name or fn.__name__, fn, origin))
        return fn

    return mark


def job(name: str) -> Callable[[F], F]:
    """Define the job ``name``; the function (``def`` or ``async def``) gets the args dict."""
    return _marker("job", name, name)


def job_callback(name: str, callback_name: str = "") -> Callable[[F], F]:
    """Add a callback to job ``name``; callbacks run after the job, in definition order."""
    return _marker("callback", name, callback_name)


def job_errback(name: str, errback_name: str = "") -> Callable[[F], F]:
    """Add an errback to job ``name``; errbacks run after a failed attempt (``args["error"]``)."""
    return _marker("errback", name, errback_name)


@dataclass(slots=True)
class JobEntry:
    """A job's body with its callbacks and errbacks, in the order they run."""

    name: str
    body: Step
    callbacks: list[Step] = field(default_factory=list)
    errbacks: list[Step] = field(default_factory=list)
    is_async: bool = False

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

    def define(self, name: str, body: Step) -> JobEntry:
        """Define (or redefine, dropping its callbacks) the job ``name``."""
        entry = JobEntry(name, body)
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
                self.define(d.job_name, d.fn)
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
