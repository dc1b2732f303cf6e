"""The jobs a test runs: a :class:`~reactor.jobs.registry.JobRegistry` from a directory, a module,
decorated or plain functions, or a ``{name: function}`` mapping."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias, cast

from reactor.jobs.loader import load_jobs
from reactor.jobs.registry import DEFS_ATTR, Definition, JobRegistry, Step

#: What the testing helpers accept as ``jobs=``.
Jobs: TypeAlias = (
    str | Path | JobRegistry | types.ModuleType | Mapping[str, Step] | Iterable[Callable[..., Any]]
)


def registry_from(jobs: Jobs) -> JobRegistry:
    """Build the registry a test's node (or eager distributor) runs.

    Args:
        jobs: a job directory (loaded like a node loads it); a ready registry; a module whose
            ``@job`` functions (with their callbacks and errbacks) to take; a ``{name: fn}``
            mapping of plain functions; or functions: a ``@job``-decorated one brings its name,
            options, callbacks and errbacks, a plain one is a job named after the function.

    Raises:
        ConfigError: a job is defined twice, or the directory does not load.
        TypeError: ``jobs`` is none of the above.
    """
    if isinstance(jobs, JobRegistry):
        return jobs
    if isinstance(jobs, str | Path):
        return load_jobs(jobs)
    registry = JobRegistry()
    if isinstance(jobs, types.ModuleType):
        registry.apply(getattr(jobs, DEFS_ATTR, []))
        return registry
    if isinstance(jobs, Mapping):
        for name, fn in jobs.items():
            registry.define(name, fn)
        return registry
    try:
        functions = list(cast("Iterable[Callable[..., Any]]", jobs))
    except TypeError:
        raise TypeError(
            "jobs= must be a job directory, a JobRegistry, a module, a {name: function} mapping "
            f"or a list of functions, not {type(jobs).__name__}"
        ) from None
    for fn in functions:
        if not callable(fn):
            raise TypeError(f"jobs= holds {fn!r}, which is not a function")
        registry.apply(_definitions_of(fn))
    return registry


def _definitions_of(fn: Callable[..., Any]) -> list[Definition]:
    """``fn``'s ``@job`` definition with its module's callbacks and errbacks for that job, or a
    plain definition named after the function."""
    defs: list[Definition] = list(getattr(fn, "__globals__", {}).get(DEFS_ATTR, []))
    mine = [d for d in defs if d.kind == "job" and d.fn is fn]
    if not mine:
        name = getattr(fn, "__name__", "")
        if not name or name == "<lambda>":
            raise TypeError(f"{fn!r} has no name: pass it as jobs={{'name': fn}}")
        return [Definition("job", name, name, fn, "")]
    names = {d.job_name for d in mine}
    return mine + [d for d in defs if d.kind != "job" and d.job_name in names]
