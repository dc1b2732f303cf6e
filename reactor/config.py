"""The configuration mapping behind ``JR.config``: known keys, their defaults and their checks."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from reactor.errors import ConfigError

#: Every key with its default: JobReactor's (DESIGN §4) first, then reactor's own.
DEFAULTS: dict[str, Any] = {
    "job_directory": "reactor_jobs",
    "max_attempt": 10,
    "retry_multiplier": 5,
    "retry_jobs_at_start": True,
    "merge_job_itself_to_args": False,
    "log_job_processing": True,
    "always_use_specified_node": False,
    "remove_done_jobs": True,
    "remove_cancelled_jobs": True,
    "remove_failed_jobs": False,
    "redis_url": "redis://127.0.0.1:6379/0",
    # reactor's own keys
    "node_capacity": 1024,
    "max_waiting_jobs": 1_000_000,
    "max_message_size": 4 * 1024 * 1024,
    "heartbeat_interval": 1.0,
    "heartbeat_timeout": 5.0,
    "shutdown_grace": 30.0,
    "defer_threads": 16,
    "node_lost_after": 30.0,
    "hand_back_after": 0.5,
    "slow_job_warning": 5.0,
}

_BOOL_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, bool)}
_STR_KEYS = {"job_directory", "redis_url"}
_POSITIVE_INT_KEYS = {
    "max_attempt",
    "node_capacity",
    "max_waiting_jobs",
    "max_message_size",
    "defer_threads",
}
_NON_NEGATIVE_NUM_KEYS = {"retry_multiplier", "shutdown_grace"}
_POSITIVE_NUM_KEYS = {
    "heartbeat_interval",
    "heartbeat_timeout",
    "node_lost_after",
    "hand_back_after",
    "slow_job_warning",
}


def _check(key: str, value: Any) -> Any:
    """Return ``value`` if it suits ``key``, else raise ConfigError saying what is expected."""
    if key not in DEFAULTS:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(DEFAULTS))}")
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise ConfigError(f"config[{key!r}] must be True or False, not {value!r}")
    elif key in _STR_KEYS:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"config[{key!r}] must be a non-empty string, not {value!r}")
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config[{key!r}] must be a number, not {value!r}")
        if key in _POSITIVE_INT_KEYS and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"config[{key!r}] must be a whole number >= 1, not {value!r}")
        if key in _NON_NEGATIVE_NUM_KEYS and value < 0:
            raise ConfigError(f"config[{key!r}] must be >= 0, not {value!r}")
        if key in _POSITIVE_NUM_KEYS and value <= 0:
            raise ConfigError(f"config[{key!r}] must be > 0, not {value!r}")
    return value


class Config(MutableMapping[str, Any]):
    """A dict-like set of settings that rejects unknown keys and bad values at once.

    Values are read when they are used, so a change applies to whatever happens after it.
    """

    def __init__(self, **overrides: Any) -> None:
        self._values = dict(DEFAULTS)
        for key, value in overrides.items():
            self[key] = value

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise ConfigError(
                f"unknown config key {key!r}; valid keys: {', '.join(sorted(DEFAULTS))}"
            )
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = _check(key, value)

    def __delitem__(self, key: str) -> None:
        """Deleting a key restores its default."""
        _check(key, DEFAULTS.get(key))
        self._values[key] = DEFAULTS[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def copy(self) -> Config:
        """An independent snapshot, e.g. for a node that must not see later changes."""
        return Config(**self._values)

    def reset(self) -> None:
        """Put every key back to its default."""
        self._values = dict(DEFAULTS)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"
