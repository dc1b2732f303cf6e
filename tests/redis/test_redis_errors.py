"""What each Redis error means for the storage (no server needed)."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reactor.storage.redis_errors import AUTH, DOWN, NOSCRIPT, POISON, classify
from reactor.storage.redis_health import Backoff


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RedisConnectionError("refused"), DOWN),
        (RedisTimeoutError("slow"), DOWN),
        (ConnectionResetError(), DOWN),
        (ReadOnlyError("You can't write against a read only replica."), DOWN),
        (OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), DOWN),
        (NoPermissionError("this user has no permissions"), DOWN),
        (BusyLoadingError("Redis is loading the dataset in memory"), DOWN),
        (MasterDownError("Link with MASTER is down"), DOWN),
        (ResponseError("READONLY You can't write against a read only replica. script: x"), DOWN),
        (ResponseError("OOM command not allowed script: x"), DOWN),
        (AuthenticationError("invalid username-password pair"), AUTH),
        (ResponseError("NOAUTH Authentication required."), AUTH),
        (NoScriptError("No matching script"), NOSCRIPT),
        (
            ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
            POISON,
        ),
        (ResponseError("ERR wrong number of arguments for 'hset' command"), POISON),
    ],
)
def test_classify(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind


def test_missing_permissions_are_an_auth_error_only_at_start() -> None:
    assert classify(NoPermissionError("no"), starting=True) == AUTH
    assert classify(ResponseError("NOPERM no"), starting=True) == AUTH
    assert classify(NoPermissionError("no")) == DOWN


def test_backoff_survives_a_very_long_outage() -> None:
    backoff = Backoff(cap=5.0, base=0.25)
    assert 0 <= backoff.compute(5000) <= 5.0  # redis-py's own overflows past ~1000 failures
