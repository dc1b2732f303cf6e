"""Durable flow records (``outbox=`` and ``group=``): what a flow is and how far it got, kept in
Redis so that another member of the group continues the flow of a member that died.

Keys (``{<group>}`` shares the outbox's hash tag, so the claim script sees its leases)::

    {prefix}:flow:{<flow id>}               hash  spec -> the encoded flow (reactor.jobs.flow_codec)
                                                  at -> start time (wall clock)
                                                  end -> msgpack [status, error] once it ended
                                                  <step number> -> msgpack [status, job id,
                                                  final args (msgpack bin) or nil, error or nil,
                                                  when (wall clock)]
    {prefix}:outbox:{<group>}:flows         hash  flow id -> owner session (live flows)

A flow's owner is the distributor session that drives it; a flow whose owner holds no lease in
the group's outbox (``{prefix}:outbox:{<group>}:leases``) is claimed by the member that notices
first. An ended flow's record is kept for ``result_ttl`` seconds (``reactor monitor flow``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from typing import Any

import msgpack

from reactor.core.flow import FlowMachine
from reactor.jobs.flow_codec import decode_flow
from reactor.storage.client import Client, make_client, safe_url
from reactor.storage.writer import REDIS_FAILURES, BatchWriter

log = logging.getLogger("reactor.flows")

PREFIX = "reactor"
#: KEYS leases, flows; ARGV session: take the group's flows whose owner holds no lease; returns
#: those, and the flows this session owned already.
_CLAIM = """
local taken, mine = {}, {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local owner = all[i + 1]
  if owner == ARGV[1] then
    mine[#mine + 1] = all[i]
  elseif not redis.call('ZSCORE', KEYS[1], owner) then
    redis.call('HSET', KEYS[2], all[i], ARGV[1])
    taken[#taken + 1] = all[i]
  end
end
return {taken, mine}
"""


def flow_key(flow_id: str, prefix: str = PREFIX) -> str:
    """A flow's record."""
    return f"{prefix}:flow:{{{flow_id}}}"


def group_flows_key(group: str, prefix: str = PREFIX) -> str:
    """A group's live flows and their owners."""
    return f"{prefix}:outbox:{{{group}}}:flows"


def step_entry(status: str, job_id: str | None, args: bytes | None, error: Any) -> bytes:
    """A step's recorded state, stamped with the wall-clock time."""
    return bytes(msgpack.packb([status, job_id, args, error, time.time()], use_bin_type=True))


def read_step(raw: bytes) -> tuple[str, str | None, bytes | None, Any]:
    """``(status, job id, final args or None, error triple or None)`` of a recorded step."""
    status, job_id, args, error = msgpack.unpackb(raw, raw=False)[:4]
    return str(status), job_id, args, error


def describe(flow_id: str, record: dict[bytes, bytes]) -> dict[str, Any]:
    """A flow's record as plain data (``reactor monitor flow``, the dashboard): its status,
    start time, and each step's number, job id, name, status and time of its last change.

    Raises:
        ValueError: the record is not a flow's.
    """
    machine = FlowMachine(decode_flow(record[b"spec"]))
    status, error = "running", None
    if b"end" in record:
        status, error = msgpack.unpackb(record[b"end"], raw=False)
    steps = []
    for number, (_, name, _) in enumerate(machine.steps()):
        raw = record.get(str(number).encode())
        fields = msgpack.unpackb(raw, raw=False) if raw else []
        state = fields[0] if fields else ("pending" if status == "running" else "skipped")
        step_error = fields[3] if len(fields) > 3 and fields[3] else None
        steps.append({
            "step": number, "id": fields[1] if fields else None, "name": name, "status": state,
            "at": fields[4] if len(fields) > 4 else None,
            "error": f"{step_error[0]}: {step_error[1]}" if step_error else None,
        })  # fmt: skip
    started = float(record.get(b"at", b"0") or 0)
    shown = f"{error[0]}: {error[1]}" if error else None
    return {"id": flow_id, "status": status, "started": started, "error": shown, "steps": steps}


class FlowStore:
    """One distributor's durable flow records (made and used on its loop).

    Args:
        url: the Redis URL (the outbox's).
        group: the distributor's group.
        session: the distributor's session (a flow's owner).
        ttl: seconds an ended flow's record is kept.
    """

    def __init__(
        self, url: str, *, group: str, session: str, ttl: float, prefix: str = PREFIX
    ) -> None:
        self.url = url
        self.session = session
        self.ttl = ttl
        self._prefix = prefix
        self._flows = group_flows_key(group, prefix)
        self._leases = f"{prefix}:outbox:{{{group}}}:leases"
        self._client: Client | None = None
        self._seq = itertools.count()  # each op a key of its own: every one is written, in order
        self._writer: BatchWriter[int, tuple[str, str, Any]] = BatchWriter(
            self._write, what="flow records", where=safe_url(url), log=log
        )

    @property
    def client(self) -> Client:
        """The Redis client, made on first use."""
        if self._client is None:
            self._client = make_client(self.url)
        return self._client

    async def create(self, flow_id: str, spec: bytes) -> None:
        """Write a new flow's record and take it as this session's (before its first step)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(flow_key(flow_id, self._prefix), mapping={"spec": spec, "at": time.time()})
        pipe.hset(self._flows, flow_id, self.session)
        await pipe.execute()

    def record(self, flow_id: str, number: int, entry: bytes) -> None:
        """Keep step ``number``'s state (written with the next batch, in order)."""
        self._put("step", flow_id, (str(number), entry))

    def finish(self, flow_id: str, status: str, error: Any) -> None:
        """The flow ended: mark its record, keep it ``ttl`` seconds, drop it from the group."""
        self._put("end", flow_id, bytes(msgpack.packb([status, error], use_bin_type=True)))

    async def claim(self) -> tuple[list[str], set[str]]:
        """The group's flows whose owner is gone, now this session's; and the flows this
        session owned already (one it drives and that is not among them was claimed by another
        member, which took this session for gone)."""
        taken, mine = await self.client.eval(_CLAIM, 2, self._leases, self._flows, self.session)
        return [_text(t) for t in taken or []], {_text(m) for m in mine or []}

    async def load(self, flow_id: str) -> dict[bytes, bytes]:
        """A flow's record (empty when it is gone)."""
        raw: dict[Any, Any] = await self.client.hgetall(flow_key(flow_id, self._prefix))
        return {_bytes(k): _bytes(v) for k, v in raw.items()}

    def _put(self, kind: str, flow_id: str, value: Any) -> None:
        self._writer.put(next(self._seq), (kind, flow_id, value))

    async def _write(self, batch: dict[int, tuple[str, str, Any]]) -> None:
        """One pipeline for the batch, one HSET per flow for its steps (a group's thousands of
        step changes in one command), each flow's end after its steps."""
        pipe = self.client.pipeline(transaction=False)
        ttl = max(1, int(self.ttl))
        steps: dict[str, dict[str, bytes]] = {}
        for kind, flow_id, value in batch.values():
            key = flow_key(flow_id, self._prefix)
            if kind == "step":
                steps.setdefault(key, {})[value[0]] = value[1]
                continue
            pending = steps.pop(key, None)
            if pending:
                pipe.hset(key, mapping=pending)  # type: ignore[arg-type]
            pipe.hset(key, "end", value)
            pipe.expire(key, ttl)
            pipe.hdel(self._flows, flow_id)
        for key, pending in steps.items():
            pipe.hset(key, mapping=pending)  # type: ignore[arg-type]
        await pipe.execute()

    async def close(self, timeout: float = 5.0) -> None:
        """Write what is pending (waiting at most ``timeout``), then close the client."""
        await self._writer.close(timeout)
        if self._client is not None:
            with contextlib.suppress(*REDIS_FAILURES):
                await self._client.aclose()
            self._client = None


def read_flow(redis: Any, flow_id: str, prefix: str = PREFIX) -> dict[str, Any] | None:
    """Flow ``flow_id`` as :func:`describe` gives it, read with a synchronous client (the
    monitor's, the dashboard's); None when Redis holds no record of it.

    Raises:
        ValueError: the record is unreadable.
    """
    raw = redis.hgetall(flow_key(flow_id, prefix))
    record = {_bytes(k): _bytes(v) for k, v in raw.items()}
    if b"spec" not in record:
        return None
    return describe(flow_id, record)


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
