"""Job storage backends, chosen by name or URL and imported lazily."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from reactor.errors import ConfigError
from reactor.storage.base import Storage

if TYPE_CHECKING:
    from reactor.config import Config
    from reactor.storage.limits import RedisGate

__all__ = ["Storage", "adopted_gate", "limits_gate", "resolve_storage"]

log = logging.getLogger("reactor.node")

_NAMES = ("memory_storage", "redis_storage", "memory", "redis://...", "rediss://...", "unix://...",
          "redis+cluster://...", "rediss+cluster://...")  # fmt: skip
_URLS = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


def resolve_storage(spec: str | Storage, *, redis_url: str) -> Storage:
    """Build the backend ``spec`` names.

    Args:
        spec: ``"memory_storage"`` (or ``"memory"``), ``"redis_storage"`` (uses ``redis_url``),
            a ``redis://``, ``rediss://`` or ``unix://`` URL, a ``redis+cluster://host:port``
            (or ``rediss+cluster://``) URL of any node of a Redis Cluster, or a Storage.
        redis_url: the URL ``"redis_storage"`` stands for.
    """
    if isinstance(spec, Storage):
        return spec
    if spec in ("memory_storage", "memory"):
        from reactor.storage.memory import MemoryStorage

        return MemoryStorage()
    if spec == "redis_storage" or spec.startswith(_URLS):
        from reactor.storage.redis import RedisStorage

        return RedisStorage(redis_url if spec == "redis_storage" else spec)
    raise ConfigError(f"unknown storage {spec!r}; use one of: {', '.join(_NAMES)}")


def limits_gate(
    config: Config, spawn: Callable[[Coroutine[Any, Any, Any]], None], url: str | None = None
) -> RedisGate | None:
    """The gate of a node's ``config["limits_store"]``, or of ``url`` (a distributor's, told in
    its welcome), or None: its limits are held in memory.

    Raises:
        ConfigError: the URL does not parse (at the node's start, not at its first job).
    """
    url = url or config["limits_store"]
    if url is None:
        return None
    from reactor.storage.client import make_client
    from reactor.storage.limits import RedisGate

    gate = RedisGate(url, lease=float(config["node_lost_after"]), spawn=spawn)
    gate.client = make_client(url)
    return gate


def adopted_gate(
    config: Config, spawn: Callable[[Coroutine[Any, Any, Any]], None], url: str
) -> RedisGate | None:
    """:func:`limits_gate` of a distributor's ``limits_store`` (told in its welcome): a URL
    that does not parse is logged, and the node keeps its limits in memory."""
    try:
        return limits_gate(config, spawn, url)
    except ConfigError as exc:
        log.error("a distributor's limits_store cannot be used: %s", exc)
        return None
