"""The Redis key layout and record encoding shared by RedisStorage and RedisMonitor.

See ``reactor.storage.redis`` for the layout itself; this module holds the key names, the
field encoding, the Lua scripts that write batches of jobs, and the monitor's scripts (retry a
job, match records by status, name and tags inside Redis).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import msgpack

from reactor.jobs.record import FIELDS, OPTION_DEFAULTS, STATUSES, JobRecord
from reactor.wire.schema import is_carrier, is_limits, is_tags

log = logging.getLogger("reactor.storage")

_STR_FIELDS: Final = frozenset(
    {"id", "name", "status", "distributor", "node", "last_error", "dsession", "cron", "tz"}
)
_INT_FIELDS: Final = frozenset({"attempt", "seq", "asg", "max_attempt", "priority"})
_FLOAT_FIELDS: Final = frozenset(
    {"run_at", "make_after", "enqueued_at", "period", "failed_at", "timeout"}
)
_BOOL_FIELDS: Final = frozenset({"defer"})
#: Fields stored msgpack-encoded: a job's tags (a list), its trace carrier (a dict) and its
#: limits (a list).
_PACKED_FIELDS: Final = frozenset({"tags", "trace", "limits"})
if _STR_FIELDS | _INT_FIELDS | _FLOAT_FIELDS | _BOOL_FIELDS | _PACKED_FIELDS | {"args"} != set(
    FIELDS
):
    raise ImportError("reactor.storage.redis does not know how to encode every JobRecord field")

_OPTIONS: Final = tuple(OPTION_DEFAULTS.items())
_BASE_FIELDS: Final = tuple(f for f in FIELDS if f not in OPTION_DEFAULTS)

# Scripts take one msgpack blob of rows (one per KEYS entry), so a batch of a thousand jobs is
# one command with few arguments. All KEYS of one call are one node's (one Cluster slot).
#: Write new jobs: each row is the job's flat field/value list.
_ADD_LUA: Final = """
local rows = cmsgpack.unpack(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(rows[i]))
end
return #KEYS
"""
#: Update jobs whose hash still exists, so a record deleted by the monitor (a cancellation)
#: is never brought back. Each row is {field/value list, fields to delete}.
_UPDATE_LUA: Final = """
local rows = cmsgpack.unpack(ARGV[1])
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, unpack(rows[i][1]))
    if #rows[i][2] > 0 then redis.call('HDEL', key, unpack(rows[i][2])) end
    n = n + 1
  end
end
return n
"""
#: Forget ``job-node`` entries (KEYS[1]) of ids (ARGV[2..]) only where they still name this node
#: (ARGV[1]): the job may have been reassigned to another node since.
UNMAP_LUA: Final = """
local n = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
"""
SCRIPTS: Final = {
    hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest(): body
    for body in (_ADD_LUA, _UPDATE_LUA, UNMAP_LUA)
}
ADD_SHA, UPDATE_SHA, UNMAP_SHA = SCRIPTS
CHUNK: Final = 1000
#: Kinds of pending write: a new record, its whole state, its removal, or only what an
#: attempt's start changes (a write-ahead: status, attempt, run_at).
OP_ADD, OP_UPDATE, OP_REMOVE, OP_BEGIN = 0, 1, 2, 3
#: Move one corrupt record aside, in the node's slot. KEYS: the job's key, its quarantined
#: copy, the quarantine hash, the node's index; ARGV: the job id, why.
QUARANTINE_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[2]) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('SREM', KEYS[4], ARGV[1])
return 1
"""
# -- the monitor's scripts (reactor.ops.monitor) -------------------------------------------------

#: KEYS: the job's hash, the node's retry list. ARGV: now (epoch seconds), retryable statuses.
#: Returns 1 when the record was reset and queued, 0 when it is missing or not retryable.
RETRY_LUA: Final = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
local ok = false
for i = 2, #ARGV do if ARGV[i] == status then ok = true end end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'status', 'new', 'attempt', '0', 'run_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'failed_at', 'last_error', 'cancel')
redis.call('RPUSH', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
return 1
"""


#: KEYS: job hashes of one node. ARGV: how many matches are wanted, the job name ('' for any),
#: how many tags every match must carry, those tags, then the statuses (none for any). Returns
#: {ids read, 1-based positions of the matches...}: the filter runs inside Redis, so scanning
#: thousands of jobs for a rare status or tag stays cheap. Tags are stored msgpack-encoded.
MATCH_LUA: Final = """
local wanted = tonumber(ARGV[1])
local name = ARGV[2]
local ntags = tonumber(ARGV[3])
local statuses, any_status = {}, true
for i = 4 + ntags, #ARGV do statuses[ARGV[i]] = true; any_status = false end
local function tagged(packed)
  if ntags == 0 then return true end
  if not packed then return false end
  local have = {}
  for _, tag in ipairs(cmsgpack.unpack(packed)) do have[tag] = true end
  for i = 4, 3 + ntags do if not have[ARGV[i]] then return false end end
  return true
end
local found, read = {}, 0
for i, key in ipairs(KEYS) do
  read = i
  local v = redis.call('HMGET', key, 'status', 'name', 'tags')
  if v[1] and (any_status or statuses[v[1]]) and (name == '' or v[2] == name) and tagged(v[3]) then
    found[#found + 1] = i
    if #found >= wanted then break end
  end
end
table.insert(found, 1, read)
return found
"""


#: How long a destroyed job's tombstone lives: longer than any timer a node arms in practice.
TOMBSTONE_TTL: Final = 7 * 24 * 3600


def job_key(prefix: str, node: str, job_id: str) -> str:
    """The hash holding one job."""
    return f"{prefix}:{{{node}}}:job:{job_id}"


def index_key(prefix: str, node: str) -> str:
    """The set of one node's job ids."""
    return f"{prefix}:{{{node}}}:jobs"


def kept_key(prefix: str, node: str, status: str) -> str:
    """The sorted set of one node's kept records of a final ``status``, scored by the epoch
    time each finished: pruning reads it instead of scanning the node's records."""
    return f"{prefix}:{{{node}}}:kept:{status}"


def tombstone_key(prefix: str, node: str, job_id: str) -> str:
    """Left by a destroy for :data:`TOMBSTONE_TTL` seconds: the record is gone on purpose."""
    return f"{prefix}:{{{node}}}:destroyed:{job_id}"


def quarantine_key(prefix: str, node: str) -> str:
    """Hash of the node's quarantined job ids -> why each was moved aside."""
    return f"{prefix}:{{{node}}}:quarantine"


def quarantined_key(prefix: str, node: str, job_id: str) -> str:
    """Where a corrupt record's raw key was renamed to."""
    return f"{prefix}:{{{node}}}:quarantined:{job_id}"


def probe_key(prefix: str, node: str) -> str:
    """The short-lived key a reconnecting node writes to learn whether Redis takes writes."""
    return f"{prefix}:{{{node}}}:probe"


def retry_key(prefix: str, node: str) -> str:
    """The list of job ids the monitor asks ``node`` to run again (same hash tag as its keys)."""
    return f"{prefix}:{{{node}}}:retry"


def cancel_channel(prefix: str, node: str) -> str:
    """The pub/sub channel on which the monitor tells ``node`` to cancel a stored job (the
    message is the job's id; the record is marked ``cancel`` = 1 first, for a node that is down).
    """
    return f"{prefix}:{{{node}}}:cancel"


def job_node_key(prefix: str) -> str:
    """The hash mapping every job id to its node."""
    return f"{prefix}:job-node"


def nodes_key(prefix: str) -> str:
    """The set of nodes that have stored jobs."""
    return f"{prefix}:nodes"


CLUSTER_SCHEMES: Final = ("redis+cluster://", "rediss+cluster://")


def cluster_url(url: str) -> tuple[str, bool]:
    """``(url for redis-py, whether it names a Redis Cluster)``: ``redis+cluster://`` and
    ``rediss+cluster://`` become ``redis://`` and ``rediss://``."""
    if url.startswith(CLUSTER_SCHEMES):
        return url.replace("+cluster", "", 1), True
    return url, False


def safe_url(url: str) -> str:
    """``url`` without its password, for log lines and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def encode_record(job: JobRecord) -> tuple[list[bytes | str], list[str]]:
    """Snapshot a record as flat HSET field/value pairs, and its None fields (stored as absent).

    The per-job options never change after enqueue: at their defaults they are neither written
    nor deleted, so a plain job's writes stay as small as before they existed.
    """
    pairs: list[bytes | str] = []
    nulls: list[str] = []
    for name in _BASE_FIELDS:
        value = getattr(job, name)
        if value is None:
            nulls.append(name)
            continue
        if name in _FLOAT_FIELDS:
            text: bytes | str = repr(float(value))
        elif name in _INT_FIELDS:
            text = str(int(value))
        elif name in _BOOL_FIELDS:
            text = "1" if value else "0"
        elif name == "args":
            text = bytes(value)
        else:
            text = str(value)
        pairs += (name, text)
    if (
        job.timeout is not None
        or job.max_attempt is not None
        or job.cron
        or job.priority
        or job.tags
        or job.trace
        or job.limits
    ):
        pairs += _encode_options(job)
    return pairs, nulls


def _encode_options(job: JobRecord) -> list[bytes | str]:
    """The per-job options that differ from their defaults, as HSET field/value pairs."""
    pairs: list[bytes | str] = []
    for name, default in _OPTIONS:
        value = getattr(job, name)
        if value != default:
            if name in _FLOAT_FIELDS:
                pairs += (name, repr(float(value)))
            elif name in _PACKED_FIELDS:
                pairs += (name, msgpack.packb(value))
            else:
                pairs += (name, str(value))
    return pairs


def encode_begin(job: JobRecord) -> tuple[list[bytes | str], list[str]]:
    """The fields an attempt's start changes, as an update row (a fifth of a whole record)."""
    return [
        "status",
        job.status,
        "attempt",
        str(job.attempt),
        "run_at",
        repr(float(job.run_at)),
    ], []


def _decode_bool(value: bytes) -> bool:
    return value == b"1"


def _decode_str(value: bytes) -> str:
    return value.decode()


def _keep(value: bytes) -> bytes:
    return value


def _decode_tags(value: bytes) -> list[str]:
    tags: list[str] = msgpack.unpackb(value)
    if not is_tags(tags):
        raise ValueError(f"tags {tags!r:.80} are not a list of short strings")
    return tags


def _decode_trace(value: bytes) -> dict[str, str]:
    trace: dict[str, str] = msgpack.unpackb(value)
    if not is_carrier(trace):
        raise ValueError(f"trace {trace!r:.80} is not a small dict of strings")
    return trace


def _decode_limits(value: bytes) -> list[Any]:
    limits: list[Any] = msgpack.unpackb(value)
    if not is_limits(limits):
        raise ValueError(f"limits {limits!r:.80} are not a job's limits list")
    return limits


_DECODERS: Final[dict[bytes, Callable[[bytes], Any]]] = {
    name.encode(): float if name in _FLOAT_FIELDS else int if name in _INT_FIELDS
    else _decode_bool if name in _BOOL_FIELDS else _keep if name == "args"
    else _decode_tags if name == "tags" else _decode_trace if name == "trace"
    else _decode_limits if name == "limits" else _decode_str
    for name in FIELDS
}  # fmt: skip


def check_record(raw: Mapping[bytes, bytes], job_id: str) -> tuple[JobRecord | None, str]:
    """Rebuild and validate the record stored under ``job_id`` from an HGETALL reply.

    Returns:
        ``(record, "")``, or ``(None, why)`` for a record a node cannot resume: a missing id,
        name or args, another job's id, an undecodable field, a non-finite time, an unknown
        status. An empty reply gives ``(None, "missing")``.
    """
    if not raw:
        return None, "missing"
    try:
        data = {
            key.decode(): _DECODERS[key](value) for key, value in raw.items() if key in _DECODERS
        }
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"undecodable field ({_describe(exc)})"
    lacking = [name for name in ("id", "name", "args") if name not in data]
    if lacking:
        return None, f"no {'/'.join(lacking)} field"
    if data["id"] != job_id:
        return None, f"holds job id {data['id']!r}"
    if data.get("status", "new") not in STATUSES:
        return None, f"unknown status {data['status']!r}"
    for name in _FLOAT_FIELDS:
        value = data.get(name)
        if value is not None and not math.isfinite(value):
            return None, f"{name} is {value!r}"
    record = JobRecord.from_dict(data)
    record.cancel_requested = raw.get(b"cancel") == b"1"  # the monitor's cancel (see ops.cancel)
    return record, ""


def decode_record(raw: Mapping[bytes, bytes]) -> JobRecord | None:
    """Rebuild a record from an HGETALL reply; None when the hash is empty or malformed."""
    try:
        data = {
            key.decode(): _DECODERS[key](value) for key, value in raw.items() if key in _DECODERS
        }
        if not {"id", "name", "args"} <= data.keys():
            return None
        record = JobRecord.from_dict(data)
        record.cancel_requested = raw.get(b"cancel") == b"1"  # the monitor's cancel
        return record
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("skipping a malformed job record (%s)", _describe(exc))
        return None


def pack_rows(rows: object) -> bytes:
    """Script rows as msgpack (str and bytes both as raw strings, which Lua's cmsgpack reads)."""
    packed: bytes = msgpack.packb(rows, use_bin_type=False)
    return packed


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
