"""The bounded msgpack codec: frames in and out, every message's envelope checked on the way in.

A frame is a msgpack array of messages; each message is an array whose first item is its kind.
Several messages share one frame when there is a backlog. Job arguments travel as msgpack ``bin``
inside the envelope, encoded once by the application and decoded (with their own limits) only
where the job runs, so the envelope can be checked cheaply with small limits.
"""

from __future__ import annotations

from typing import Any

import msgpack

from reactor.errors import ProtocolError
from reactor.wire.args import (
    DEFAULT_MAX_MESSAGE_SIZE,
    ContainerBudget,
    describe_failure,
    reject_ext,
)
from reactor.wire.layout import FEEDBACK_LEN, JOB_BASE_LEN, JOB_FULL_LEN, job_wire
from reactor.wire.messages import (
    FEEDBACK,
    FRAME_BYTES_PER_CONTAINER,
    JOB,
    MAX_FRAME_MESSAGES,
    MAX_ID_LEN,
    MAX_NAME_LEN,
    MAX_TEXT_LEN,
    Feedback,
    Job,
    Message,
)
from reactor.wire.schema import KIND_OF, check_message, is_delay, is_num, job_options_ok


def envelope_limits(max_message_size: int) -> dict[str, Any]:
    """The msgpack unpacker limits for a frame of at most ``max_message_size`` bytes."""
    return {
        "raw": False,
        "use_list": True,
        "strict_map_key": True,
        "max_str_len": MAX_TEXT_LEN,
        "max_bin_len": max_message_size,
        "max_array_len": MAX_FRAME_MESSAGES,
        "max_map_len": 0,
        "max_ext_len": 0,
        "ext_hook": reject_ext,
    }


def _refuse_map(value: dict[Any, Any]) -> dict[Any, Any]:
    """No message carries a map: the first one (even empty) condemns the frame."""
    raise ProtocolError("a frame holds a map, which no message has")


class Codec:
    """Encodes frames and decodes them under a size limit, checking every message's envelope."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._limits = envelope_limits(max_message_size)
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)

    def encode(self, messages: list[Message] | list[list[Any]]) -> bytes:
        """One frame holding ``messages`` (NamedTuples or ready wire lists)."""
        wire = [
            m if type(m) is list else job_wire(m) if type(m) is Job else [KIND_OF[type(m)], *m]
            for m in messages
        ]
        frame: bytes = self._packer.pack(wire)
        return frame

    def decode(self, frame: bytes) -> tuple[list[Message], list[ProtocolError]]:
        """The valid messages of a frame, and an error for each invalid one.

        Raises:
            ProtocolError: the frame as a whole is oversized or not a msgpack array of messages.
        """
        if len(frame) > self.max_message_size:
            raise ProtocolError(
                f"frame of {len(frame)} bytes exceeds the {self.max_message_size}-byte limit"
            )
        # An array costs ~64 bytes of Python memory however short it is on the wire. The budget
        # halves what a frame of empty arrays costs; it cannot be tighter, as a schema-valid ack
        # pair takes 3 bytes (FRAME_BYTES_PER_CONTAINER).
        budget = ContainerBudget(len(frame) // FRAME_BYTES_PER_CONTAINER + 1024, "frame")
        try:
            raw = msgpack.unpackb(
                frame, list_hook=budget.on_list, object_hook=_refuse_map, **self._limits
            )
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(f"undecodable frame: {describe_failure(exc)}") from None
        if type(raw) is not list:
            raise ProtocolError(f"a frame must be an array of messages, not {type(raw).__name__}")
        messages: list[Message] = []
        errors: list[ProtocolError] = []
        for item in raw:
            try:
                messages.append(decode_message(item))
            except ProtocolError as exc:
                errors.append(exc)
        return messages, errors


_COUNT_LIMIT = 2**31
_new_tuple = tuple.__new__


def _fast(item: list[Any]) -> Message | None:
    """The two messages that come by the thousand, checked inline (the same checks as their
    schema); None sends anything unusual down the general path, which explains what is wrong."""
    kind = item[0]
    # The unpacking orders are layout.py's (FEEDBACK_ID..., JOB_ID...): a test holds them together.
    if kind == FEEDBACK and len(item) == FEEDBACK_LEN:
        _, job_id, asg, seq, outcome, final, args, error = item
        if (
            type(job_id) is str
            and type(asg) is int
            and type(seq) is int
            and type(outcome) is int
            and type(final) is bool
            and type(args) is bytes
            and error is None
            and len(job_id) <= MAX_ID_LEN
            and 0 <= asg < _COUNT_LIMIT
            and 0 <= seq < _COUNT_LIMIT
            and 0 <= outcome < _COUNT_LIMIT
            and job_id.isprintable()
        ):
            return Feedback(job_id, asg, seq, outcome, final, args, None)
    elif kind == JOB and JOB_BASE_LEN <= (n := len(item)) <= JOB_FULL_LEN:
        head = item if n == JOB_BASE_LEN else item[:JOB_BASE_LEN]  # options: see below
        _, job_id, asg, name, args, delay, run_at, period, defer, attempt, enqueued_at = head
        if (
            type(job_id) is str
            and type(asg) is int
            and type(name) is str
            and type(args) is bytes
            and period is None
            and type(defer) is bool
            and type(attempt) is int
            and len(job_id) <= MAX_ID_LEN
            and len(name) <= MAX_NAME_LEN
            and 0 <= asg < _COUNT_LIMIT
            and 0 <= attempt < _COUNT_LIMIT
            and is_delay(delay)
            and is_num(run_at)
            and is_num(enqueued_at)
            and job_id.isprintable()
            and name.isprintable()
        ):
            if n == JOB_BASE_LEN:  # tuple.__new__: no Python frame to fill in the defaults
                return _new_tuple(
                    Job,
                    (job_id, asg, name, args, delay, run_at, None, defer, attempt, enqueued_at,
                     None, None, None, None, 0, None, None, None),
                )  # fmt: skip
            extra = item[JOB_BASE_LEN:]
            if job_options_ok(extra):
                return Job(
                    job_id, asg, name, args, delay, run_at, None, defer, attempt, enqueued_at,
                    *extra,
                )  # fmt: skip
    return None


def decode_message(item: Any) -> Message:
    """Check one decoded message against its schema and build its typed form."""
    if type(item) is list and item:
        fast = _fast(item)
        if fast is not None:
            return fast
    return check_message(item)
