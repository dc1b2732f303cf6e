"""A distributor's workflows: starting them (``enqueue_flow``) and, with ``outbox=`` (durable
flows), recording them in Redis and continuing the flows of group members that died.

Without ``outbox=`` a flow lives in the memory of the distributor that started it, like a job's
feedback callables: if that process dies, its flow stops (the steps already enqueued still run).
With it, the flow's record says what the flow is and how far it got; a live or restarted member
of the group claims a flow whose owner's lease lapsed, replays the recorded outcomes through the
same :class:`~reactor.core.flow.FlowMachine`, and enqueues again the steps that had no recorded
end (so a step running when its owner died may run twice: at-least-once, as jobs are). A member
that finds on its tick that another claimed one of its flows (it was taken for gone) stops driving
it. Feedback callables run only in the process that started the flow; the outcome reaches the
result store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from reactor.core.flow import FlowMachine
from reactor.distributor.flow_handle import FlowHandle
from reactor.distributor.flows import FlowRunner
from reactor.errors import FlowError, JobFailed, ReactorError, RemoteError
from reactor.jobs.flow import FLOW_TYPES, Flow
from reactor.jobs.flow_codec import decode_flow, encode_flow
from reactor.jobs.options import Feedback, check_feedback
from reactor.storage.flows import FlowStore, read_step
from reactor.wire import protocol as P

if TYPE_CHECKING:
    from reactor.distributor.driver import Distributor

log = logging.getLogger("reactor.flows")

#: Seconds ``enqueue_flow`` waits for a durable flow's record to be written.
WRITE_TIMEOUT = 30.0


class Workflows:
    """The flows a distributor drives (see the module docstring).

    Args:
        distributor: the distributor the steps are enqueued on.
    """

    def __init__(self, distributor: Distributor) -> None:
        self.distributor = distributor
        #: Flows not ended yet, by id.
        self.live: dict[str, FlowRunner] = {}
        self._store: FlowStore | None = None
        self._claiming: asyncio.Task[None] | None = None

    @property
    def store(self) -> FlowStore | None:
        """The durable flow records (``outbox=``), made on first use; None without an outbox."""
        d = self.distributor
        if self._store is None and d.outbox is not None:
            ttl = float(d.config["result_ttl"])
            self._store = FlowStore(d.outbox, group=d.group, session=d.session, ttl=ttl)
        return self._store

    def start(
        self, flow: Flow, on_success: Feedback | None, on_error: Feedback | None
    ) -> FlowHandle:
        """Check ``flow`` and start it; a durable one returns once its record is in Redis
        (called from the loop, it is written before its first step is enqueued).

        Raises:
            FlowError: ``flow`` is not a step, chain, group or chord.
            TypeError: a feedback callable that is not callable, or args msgpack cannot carry.
            ReactorError: the distributor is not running.
            StorageUnavailableError: a durable flow's record could not be written.
        """
        if not isinstance(flow, FLOW_TYPES):
            raise FlowError(
                f"enqueue_flow takes a step, chain, group or chord, not {type(flow).__name__}"
            )
        check_feedback(on_success, on_error)
        d = self.distributor
        if not d.started:
            raise ReactorError("the distributor is not running; start it before enqueue_flow")
        store = self.store
        runner = self._runner(FlowMachine(flow), on_success, on_error, store, None)
        if store is None:
            runner.post(runner.start)
            return runner.handle
        spec = encode_flow(flow)
        loop = d.loop
        assert loop is not None
        written = asyncio.run_coroutine_threadsafe(self._create(runner, spec), loop)
        if _running_loop() is not loop:
            _wait_written(written, store.url)
        return runner.handle

    async def _create(self, runner: FlowRunner, spec: bytes) -> None:
        assert runner.store is not None
        try:
            await runner.store.create(runner.id, spec)
        except BaseException as exc:
            self.live.pop(runner.id, None)
            runner.handle.resolve(None, ReactorError(f"flow {runner.id} was not written: {exc}"))
            raise
        runner.start()

    def _runner(
        self,
        machine: FlowMachine,
        on_success: Feedback | None,
        on_error: Feedback | None,
        store: FlowStore | None,
        flow_id: str | None,
    ) -> FlowRunner:
        runner = FlowRunner(
            self.distributor, machine, on_success, on_error, store=store, flow_id=flow_id
        )
        runner.on_end = self._ended
        self.live[runner.id] = runner
        return runner

    def _ended(self, runner: FlowRunner) -> None:
        self.live.pop(runner.id, None)

    # -- continuing the flows of members that died (on the loop) -----------------------------------

    def tick(self) -> None:
        """On the distributor's heartbeat tick: claim the group's orphaned flows, if durable."""
        if self._store is None and self.distributor.outbox is None:
            return
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.get_running_loop().create_task(self._claim())

    async def _claim(self) -> None:
        store = self.store
        assert store is not None
        try:
            taken, mine = await store.claim()
            self._fence(mine)
            for flow_id in taken:
                self._resume(flow_id, await store.load(flow_id))
        except Exception as exc:  # Redis unreachable, or a flow's bad record: the next tick retries
            log.warning("cannot claim the group's orphaned flows: %s", exc)

    def _fence(self, mine: set[str]) -> None:
        """Stop driving the durable flows another member claimed (it took this distributor
        for gone: a pause past its lease), so that one member drives each flow from now on."""
        for runner in list(self.live.values()):
            if runner.store is None or not runner.started or runner.id in mine:
                continue
            if runner.left or runner.machine.done:
                continue
            log.warning("flow %s was claimed by another member of group %r (this distributor "
                        "was taken for gone); it goes on there", runner.id,
                        self.distributor.group)  # fmt: skip
            self._leave(runner, "was claimed by another member of its group")

    def _leave(self, runner: FlowRunner, why: str) -> None:
        """``runner``'s flow goes on elsewhere in the group: stop driving it, tell its handle."""
        runner.left = True
        self.live.pop(runner.id, None)
        where = f"read its result with JR.result({runner.id!r})"
        runner.handle.resolve(None, ReactorError(f"flow {runner.id} {why}; {where}"))

    def _resume(self, flow_id: str, record: dict[bytes, bytes]) -> None:
        """Continue ``flow_id`` from its record: replay its ended steps, enqueue the rest."""
        if not record or b"end" in record or b"spec" not in record:
            return
        try:
            machine = FlowMachine(decode_flow(record[b"spec"]))
            ended = _ended_steps(record, machine)
        except ValueError as exc:
            log.error("flow %s: its record is unreadable (%s); it is not continued", flow_id, exc)
            return
        runner = self._runner(machine, None, None, self.store, flow_id)
        self.distributor.metrics.flows["continued"] += 1
        log.info("continuing flow %s of a group member that is gone (%d of %d steps ended)",
                 flow_id, len(ended), len(machine))  # fmt: skip
        runner.resume(machine.resume(ended))

    async def stop(self) -> None:
        """The distributor stops: durable flows are left to the group; records are written."""
        for runner in list(self.live.values()):
            if runner.store is not None:
                self._leave(runner, "was left to its group by a stopping distributor")
        claiming, self._claiming = self._claiming, None
        if claiming is not None:
            claiming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claiming
        if self._store is not None:
            await self._store.close()


def _ended_steps(record: dict[bytes, bytes], machine: FlowMachine) -> dict[int, tuple[bool, Any]]:
    """The recorded ends of a flow's steps, as :meth:`FlowMachine.resume` takes them; fills in
    the machine's job ids."""
    ended: dict[int, tuple[bool, Any]] = {}
    for field, raw in record.items():
        if not field.isdigit():
            continue
        number = int(field)
        if number >= len(machine):
            raise ValueError(f"step {number} of a flow of {len(machine)}")
        status, job_id, packed, error = read_step(raw)
        machine.job_ids[number] = job_id
        args = P.unpack_args(packed) if packed else {}
        if status == "succeeded":
            ended[number] = (True, args)
        elif status == "failed":
            remote = RemoteError(*error) if error else RemoteError("Error", "the step failed")
            ended[number] = (False, JobFailed(job_id or "?", remote, {**args, "error": remote}))
    return ended


def _wait_written(written: Any, url: str) -> None:
    from reactor.errors import StorageUnavailableError
    from reactor.storage.client import safe_url

    try:
        written.result(WRITE_TIMEOUT)
    except TimeoutError:
        raise StorageUnavailableError(
            f"the flow record was not written to {safe_url(url)} in {WRITE_TIMEOUT}s"
        ) from None
    except Exception as exc:
        raise StorageUnavailableError(
            f"the flow record could not be written to {safe_url(url)}: {exc}"
        ) from exc


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
