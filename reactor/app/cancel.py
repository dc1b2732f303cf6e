"""``JR.cancel(job_id)``: cancel a job of the facade's distributor by its id, from any thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reactor.errors import ReactorError

if TYPE_CHECKING:
    from reactor.app.runtime import Runtime


def cancel(runtime: Runtime, job_id: str) -> None:
    """Cancel job ``job_id`` the way its ``handle.cancel()`` does: a waiting job ends at once, a
    running attempt is told to stop (``CancelledError`` in an ``async def`` job,
    ``current_job().cancelled`` in a ``def`` or ``defer=True`` one) and the job ends cancelled.
    A job that has ended, or that this distributor does not hold, is left alone (no error).

    Raises:
        TypeError: ``job_id`` is not a string.
        ReactorError: no distributor runs (call ``JR.start_distributor`` first).
    """
    if type(job_id) is not str:
        raise TypeError(f"JR.cancel() takes a job id (a string), not {job_id!r}")
    distributor = runtime.distributor
    if distributor is None:
        raise ReactorError("no distributor: call JR.start_distributor(host, port) first")
    distributor.cancel(job_id)
