"""The configuration mapping behind ``JR.config``: known keys, their defaults, their checks, and
how a key is read from text (``--set KEY=VALUE`` and the ``REACTOR_<KEY>`` environment variables).

Precedence, highest first: a value set in code (``Config(key=...)``, ``config[key] = ...``) or on
the command line (``--set``), then the environment variable ``REACTOR_<KEY>`` (read when a
``Config`` is made), then the default below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
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
    "drain_timeout": 10.0,
    "result_ttl": 86400,
    # A node's result store (a Redis URL): where it keeps the final outcomes its distributor may
    # never hear of, so a result outlives the process that enqueued the job.
    "result_store": None,
    # Where a node's concurrency slots and rate windows live (a Redis URL): every node sharing it
    # shares its limits (issue 20). None: each node process keeps its own, in memory.
    "limits_store": None,
    # Pruning of kept records (complete/failed/cancelled kept by ``remove_*_jobs`` False): seconds
    # after which one is removed, and the most kept per status per node (None: no limit).
    "kept_jobs_ttl": None,
    "kept_jobs_max": None,
}

_BOOL_KEYS = {k for k, v in DEFAULTS.items() if isinstance(v, bool)}
_STR_KEYS = {"job_directory", "redis_url"}
_OPTIONAL_STR_KEYS = {"result_store", "limits_store"}  # None, or a non-empty string
_POSITIVE_INT_KEYS = {
    "max_attempt",
    "node_capacity",
    "max_waiting_jobs",
    "max_message_size",
    "defer_threads",
}
_OPTIONAL_DURATION_KEYS = {"kept_jobs_ttl"}  # None, seconds > 0, or "90s" "30m" "12h" "7d" "2w"
_OPTIONAL_COUNT_KEYS = {"kept_jobs_max"}  # None, or a whole number >= 1
_NON_NEGATIVE_NUM_KEYS = {"retry_multiplier", "shutdown_grace", "drain_timeout"}
_POSITIVE_NUM_KEYS = {
    "heartbeat_interval",
    "heartbeat_timeout",
    "node_lost_after",
    "hand_back_after",
    "slow_job_warning",
    "result_ttl",
}


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"45"``, ``"90s"``, ``"30m"``, ``"12h"``,
    ``"7d"``, ``"2w"`` or ``"1.5h"`` (one number, one optional unit).

    Raises:
        ValueError: not a positive, finite duration; the message says what is accepted.
    """
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        unit = _UNITS.get(text[-1:], 0) if text else 0
        number = text[:-1] if unit else text
        try:
            seconds = float(number) * (unit or 1)
        except ValueError:
            seconds = None
    if seconds is None or not 0 < seconds < float("inf"):
        raise ValueError(
            f"{value!r} is not a duration: use seconds > 0, or a number with s, m, h, d or w "
            "(90s, 30m, 12h, 7d)"
        )
    return seconds


def _check_optional(key: str, value: Any) -> Any:
    """Check a key whose value may be None: a duration or a count (see :data:`DEFAULTS`)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if key in _OPTIONAL_DURATION_KEYS:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"config[{key!r}]: {exc}, or None") from None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config[{key!r}] must be a whole number >= 1 or None, not {value!r}")
    return value


def check_value(key: str, value: Any) -> Any:
    """Return ``value`` if it suits config ``key``, else raise ConfigError saying what is
    expected (also for settings given as arguments, such as ``Node(capacity=)``)."""
    if key not in DEFAULTS:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(DEFAULTS))}")
    if key in _OPTIONAL_DURATION_KEYS or key in _OPTIONAL_COUNT_KEYS:
        return _check_optional(key, value)
    if key in _BOOL_KEYS:
        if not isinstance(value, bool):
            raise ConfigError(f"config[{key!r}] must be True or False, not {value!r}")
    elif key in _STR_KEYS or key in _OPTIONAL_STR_KEYS:
        if key in _OPTIONAL_STR_KEYS and value is None:
            return value
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


#: The prefix of the environment variables that set config keys (``REACTOR_MAX_ATTEMPT``).
ENV_PREFIX = "REACTOR_"

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def env_name(key: str) -> str:
    """The variable that sets config ``key``: ``max_attempt`` -> ``REACTOR_MAX_ATTEMPT``."""
    return ENV_PREFIX + key.upper()


def parse_value(key: str, text: str, *, source: str) -> Any:
    """Read config ``key``'s value from ``text``, typed after the key's default, and check it.

    Booleans take true/false, 1/0, yes/no, on/off (any case); numbers whose default is a whole
    number may still be given with a fraction (``retry_multiplier=0.5``).

    Args:
        key: a config key.
        text: the value as written.
        source: where it was written, for the error message (``--set max_attempt``,
            ``REACTOR_MAX_ATTEMPT``).

    Raises:
        ConfigError: an unknown key, or a value that does not parse or does not suit the key;
            the message starts with ``source``.
    """
    if key not in DEFAULTS:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(DEFAULTS))}")
    default = DEFAULTS[key]
    value: Any
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered not in _TRUE + _FALSE:
                raise ValueError(text)
            value = lowered in _TRUE
        elif isinstance(default, int):
            stripped = text.strip()
            value = int(stripped) if stripped.lstrip("-").isdigit() else float(stripped)
        elif isinstance(default, float):
            value = float(text)
        else:
            value = text
    except ValueError:
        raise ConfigError(f"{source}: {text!r} is not a valid {type(default).__name__}") from None
    try:
        return check_value(key, value)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def apply_settings(config: MutableMapping[str, Any], settings: list[str]) -> None:
    """Apply ``KEY=VALUE`` strings (the CLI's ``--set``) to ``config``.

    Raises:
        ConfigError: a malformed pair, an unknown key or a bad value.
    """
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set takes KEY=VALUE, not {item!r}")
        config[key] = parse_value(key, text, source=f"--set {key}")


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config keys set by ``REACTOR_<KEY>`` variables, parsed and checked.

    Other ``REACTOR_*`` variables (the CLI's options, the benchmarks' own) are not config keys
    and are left alone. An empty variable counts as unset.

    Raises:
        ConfigError: a bad value; the message names the variable.
    """
    env = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for key in DEFAULTS:
        name = env_name(key)
        text = env.get(name)
        if text:
            found[key] = parse_value(key, text, source=f"environment variable {name}")
    return found


class Config(MutableMapping[str, Any]):
    """A dict-like set of settings that rejects unknown keys and bad values at once.

    Values are read when they are used, so a change applies to whatever happens after it.
    Making one reads the ``REACTOR_<KEY>`` environment variables (see the module docstring for
    the precedence); keyword arguments override them.

    Raises:
        ConfigError: an unknown key or a bad value, in ``overrides`` or in the environment
            (then the message names the variable).
    """

    def __init__(self, **overrides: Any) -> None:
        self._base = {**DEFAULTS, **from_environment()}
        self._values = dict(self._base)
        for key, value in overrides.items():
            self[key] = value

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise ConfigError(
                f"unknown config key {key!r}; valid keys: {', '.join(sorted(DEFAULTS))}"
            )
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = check_value(key, value)

    def __delitem__(self, key: str) -> None:
        """Deleting a key restores its value from the environment, or else its default."""
        check_value(key, DEFAULTS.get(key))
        self._values[key] = self._base[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def copy(self) -> Config:
        """An independent snapshot, e.g. for a node that must not see later changes.

        The environment is not read again: the copy holds exactly this config's values.
        """
        clone = Config.__new__(Config)
        clone._base = dict(self._base)
        clone._values = dict(self._values)
        return clone

    def reset(self) -> None:
        """Put every key back to its value from the environment (as read when this config was
        made), or else its default."""
        self._values = dict(self._base)

    def __repr__(self) -> str:
        return f"Config({self._values!r})"


class BadEnvironmentConfig(Config):
    """Stands in for the facade's config (``JR.config``) when a ``REACTOR_<KEY>`` variable is bad,
    so that ``import reactor`` (and ``reactor --help``) still works: reading or setting any key
    raises the error, which names the variable, so the first use of the facade fails fast.
    """

    def __init__(self, error: ConfigError) -> None:
        self._base = dict(DEFAULTS)
        self._values = dict(DEFAULTS)
        self.error = error

    def __getitem__(self, key: str) -> Any:
        raise ConfigError(str(self.error))

    def __setitem__(self, key: str, value: Any) -> None:
        raise ConfigError(str(self.error))

    def __repr__(self) -> str:
        return f"BadEnvironmentConfig({str(self.error)!r})"
