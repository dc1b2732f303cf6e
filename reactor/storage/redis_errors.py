"""What a Redis error means for a node's storage: unavailable, an authentication problem, or poison.

Three kinds matter (DESIGN §3 "Durable nodes"):

* **down**: Redis cannot take writes now, but may later: connection and timeout errors,
  ``READONLY`` (a failover demoted the primary), ``OOM``, ``NOPERM`` after start, ``LOADING``,
  ``MASTERDOWN``, ``CLUSTERDOWN``, ``TRYAGAIN``. The node stops taking jobs until it is back.
* **auth**: a wrong password, ``NOAUTH``, ``WRONGPASS``, or (at start) an ACL user missing a
  permission. Retrying cannot help: ``start()`` raises :class:`~reactor.errors.StorageAuthError`.
* **poison**: anything else the server answered (``WRONGTYPE`` because a job hash was replaced by
  a string, a script error): a property of the keys one write touched, not of Redis.

What RedisStorage makes of them: down makes it unavailable until it has taken writes for a short
stable period; auth makes ``start()`` raise; a poisoned write is dropped and reported for that job
alone. ``RedisStorage.write_ahead`` rides on the same batches: its future waits across outages
and names the poisoned jobs. At start, a ``maxmemory-policy`` that can evict job keys
(``allkeys-*``) is logged as a WARNING; ``volatile-*`` only evicts keys with a TTL, and job keys
have none, so it is accepted (only tombstones could be evicted).
"""

from __future__ import annotations

from typing import Final

from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

DOWN: Final = "down"
AUTH: Final = "auth"
NOSCRIPT: Final = "noscript"
POISON: Final = "poison"

#: Errors of a Redis that cannot take writes now but may later.
DOWN_ERRORS: Final = (
    RedisConnectionError,  # includes BusyLoadingError (LOADING)
    RedisTimeoutError,
    OSError,
    ReadOnlyError,
    OutOfMemoryError,
    NoPermissionError,
    MasterDownError,
    ClusterDownError,
    TryAgainError,
    BusyLoadingError,
)
AUTH_ERRORS: Final = (
    AuthenticationError,
    AuthorizationError,
    AuthenticationWrongNumberOfArgsError,
)
#: Error codes that mean "down" when a reply reaches us as a plain ResponseError (for example
#: re-raised from inside a Lua script by a server that does not keep the error's class).
_DOWN_CODES: Final = frozenset(
    {"READONLY", "OOM", "NOPERM", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"}
)
_AUTH_CODES: Final = frozenset({"NOAUTH", "WRONGPASS"})


def classify(exc: BaseException, *, starting: bool = False) -> str:
    """The kind of ``exc``: :data:`DOWN`, :data:`AUTH`, :data:`NOSCRIPT` or :data:`POISON`.

    Args:
        exc: an exception raised by redis-py (or the OS) for one command or a whole pipeline.
        starting: True while the storage starts, where a missing ACL permission (``NOPERM``) is
            a configuration error to report at once, not an outage to wait out.
    """
    if isinstance(exc, AUTH_ERRORS):
        return AUTH
    if isinstance(exc, NoPermissionError):
        return AUTH if starting else DOWN
    if isinstance(exc, NoScriptError):
        return NOSCRIPT
    if isinstance(exc, DOWN_ERRORS):
        return DOWN
    if isinstance(exc, RedisError):
        code = str(exc).split(" ", 1)[0].upper()
        if code in _AUTH_CODES:
            return AUTH
        if code == "NOPERM":
            return AUTH if starting else DOWN
        if code in _DOWN_CODES:
            return DOWN
        if code == "NOSCRIPT":
            return NOSCRIPT
        return POISON
    return DOWN  # not a reply from Redis: the client or the socket failed


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for log lines."""
    return f"{type(exc).__name__}: {exc}"
