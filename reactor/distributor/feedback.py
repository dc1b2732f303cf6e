"""Turns a node's feedback into what the application sees: args, callables, the outcome."""

from __future__ import annotations

import logging
from typing import Any

from reactor.distributor.handle import JobHandle
from reactor.errors import JobCancelledError, JobFailed, RemoteError
from reactor.wire import protocol as P

log = logging.getLogger("reactor.distributor")


def run_feedback(
    name: str, handle: JobHandle, fb: P.Feedback
) -> tuple[dict[str, Any], BaseException | None]:
    """Decode ``fb``'s args, run the matching feedback callable, and say how the job ended.

    An exception raised by the callable is logged and goes no further.

    Returns:
        The final args (with ``args["error"]`` a RemoteError on failure) and the error the
        handle's result should raise, or None on success.
    """
    try:
        args = P.unpack_args(fb.args)
    except Exception as exc:
        log.warning("feedback for job %s carried undecodable args (%s)", fb.id, exc)
        args = {}
    if fb.outcome == P.CANCELLED:
        cancelled = JobCancelledError(f"job {fb.id} ({name!r}) was cancelled")
        return args, cancelled if fb.final else None
    if fb.error is not None:
        args["error"] = RemoteError(*fb.error)
    success = fb.outcome == P.SUCCESS
    callable_ = handle.on_success if success else handle.on_error
    if callable_ is not None:
        try:
            callable_(args)
        except Exception:
            log.exception(
                "the %s feedback of job %s (%r) raised; the distributor goes on",
                "success" if success else "error",
                fb.id,
                name,
            )
    if success:
        return args, None
    remote = args.get("error")
    if not isinstance(remote, RemoteError):
        remote = RemoteError("Error", "the job failed")
    return args, JobFailed(fb.id, remote, args)
