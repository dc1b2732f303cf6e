"""Loads a node's job files: every ``*.py`` under the job directory, recursively, sorted."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from pathlib import Path

from reactor.errors import ConfigError
from reactor.jobs.registry import DEFS_ATTR, Definition, JobRegistry

log = logging.getLogger("reactor.loader")


def load_jobs(directory: str | Path) -> JobRegistry:
    """Build a fresh registry from the job files under ``directory``.

    Files load in sorted path order, each as its own module, so a job's callbacks may live in a
    later file than the job. The directory itself is never modified (unlike JobReactor's loader).

    Raises:
        ConfigError: the directory does not exist, or a file fails to import.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(
            f"job directory {str(root)!r} does not exist; create it with job files or set "
            "job_directory / --jobs to the right place"
        )
    registry = JobRegistry()
    tag = hashlib.sha1(str(root.resolve()).encode(), usedforsecurity=False).hexdigest()[:8]
    definitions: list[Definition] = []
    for path in sorted(root.rglob("*.py")):
        definitions.extend(_load_file(path, f"reactor_jobs_{tag}.{_module_name(path, root)}"))
    registry.apply(definitions)
    log.debug("loaded %d jobs from %s: %s", len(registry), root, ", ".join(registry.names()))
    return registry


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return "_".join(p.replace(".", "_").replace("-", "_") for p in parts)


def _load_file(path: Path, module_name: str) -> list[Definition]:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load job file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so dataclasses, pickling of tracebacks etc. work inside it
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        sys.modules.pop(module_name, None)
        raise ConfigError(
            f"job file {path} failed to load: it imports {exc.name!r}, which is not on the "
            f"node's import path ({exc}); run the node from your project's directory, or add the "
            "directory that holds it with reactor node --path DIR (or PYTHONPATH)"
        ) from exc
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ConfigError(f"job file {path} failed to load: {type(exc).__name__}: {exc}") from exc
    return list(getattr(module, DEFS_ATTR, []))
