"""Log output for the ``reactor`` command: text or JSON lines, with the structured fields
(``job_id``, ``job_name``, ``node``, ``attempt``, ``distributor``, ...) passed with ``extra=``.

The library itself only logs through ``logging.getLogger("reactor.<area>")`` and never configures
logging; applications keep their own setup (Python then shows WARNING and above on stderr).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any, Final, Literal

__all__ = ["FIELDS", "JsonFormatter", "TextFormatter", "configure", "fields_of"]

#: The structured fields reactor's own log calls pass with ``extra=``, in display order.
FIELDS: Final = ("job_id", "job_name", "node", "attempt", "distributor")
#: Short names for the text format: ``[job=... name=... node=...]``.
_SHORT: Final = {"job_id": "job", "job_name": "name"}
#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields on ``record`` (from ``extra=``): known ones first, then the rest."""
    extra = {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }
    ordered: dict[str, Any] = {k: extra.pop(k) for k in FIELDS if k in extra}
    ordered.update(sorted(extra.items()))
    return ordered


class TextFormatter(logging.Formatter):
    """``2026-01-01 12:00:00,123 INFO reactor.node: message [job=... node=...]``.

    The bracket is there only when the call passed structured fields.
    """

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's own name
        line = super().formatMessage(record)
        fields = fields_of(record)
        if not fields:
            return line
        inner = " ".join(f"{_SHORT.get(k, k)}={_compact(v)}" for k, v in fields.items())
        return f"{line} [{inner}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
    ``message``, the structured fields, and ``exc`` (the formatted traceback) for exceptions."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler[IO[str]]):
    """The handler :func:`configure` installs, marked so a second call replaces it.

    Without a stream of its own it writes to whatever ``sys.stderr`` is at each record, so a
    replaced stderr (a test's capture, a daemon's redirect) never leaves it on a closed file.
    """

    def __init__(self, stream: IO[str] | None) -> None:
        super().__init__(sys.stderr if stream is None else stream)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure(
    level: str = "INFO",
    fmt: Literal["text", "json"] | str = "text",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send log records of ``level`` and above to ``stream`` (stderr by default) as text or JSON.

    Installs one handler on the root logger (so jobs' own loggers show too), replacing the one an
    earlier call installed and leaving any other handler alone.

    Args:
        level: DEBUG, INFO, WARNING or ERROR (any case).
        fmt: ``text`` or ``json``.
        stream: where lines go; None for stderr (whatever ``sys.stderr`` is when a record is
            written), never stdout unless asked.

    Returns:
        The installed handler.

    Raises:
        ValueError: an unknown level or format.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; valid: text, json")
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def _iso(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _compact(value: Any) -> str:
    text = str(value)
    return repr(text) if (" " in text or not text) else text
