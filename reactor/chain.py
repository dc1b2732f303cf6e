"""Runs one attempt of a job's chain: the body and callbacks, or on an exception the errbacks.

Plain functions with no sockets and no storage, so they can be tested on their own. A chain whose
steps are all ``def`` runs synchronously (no task, no coroutine); one with an ``async def`` step,
or with ``defer=True``, runs as a coroutine.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from enum import Enum
from typing import Any

from reactor.errors import CancelJob
from reactor.registry import JobEntry, Step

log = logging.getLogger("reactor.chain")


class Outcome(Enum):
    """How an attempt ended."""

    DONE = "done"  # every step ran
    CANCELLED = "cancelled"  # CancelJob in the body or a callback: success feedback, no more runs
    FAILED = "failed"  # an exception; errbacks ran; may be retried
    FAILED_CANCELLED = "failed_cancelled"  # CancelJob in an errback: error feedback, no retries


class Attempt:
    """The result of one attempt: the outcome, the args to keep, and the error if any."""

    __slots__ = ("args", "error", "outcome")

    def __init__(self, outcome: Outcome, args: dict[str, Any], error: BaseException | None) -> None:
        self.outcome = outcome
        self.args = args
        self.error = error


def run_sync(
    entry: JobEntry, args: dict[str, Any], fresh_args: Callable[[], dict[str, Any]]
) -> Attempt:
    """Run an all-``def`` chain on this thread.

    Args:
        entry: the job's steps.
        args: the attempt's args dict, shared by the body and every callback.
        fresh_args: builds the pre-attempt args again, for the errbacks (which must not see
            what the failed attempt added).
    """
    try:
        entry.body(args)
        for callback in entry.callbacks:
            callback(args)
    except CancelJob:
        return Attempt(Outcome.CANCELLED, args, None)
    except Exception as exc:
        return _errbacks_sync(entry.errbacks, fresh_args(), exc)
    return Attempt(Outcome.DONE, args, None)


def _errbacks_sync(errbacks: Sequence[Step], args: dict[str, Any], exc: Exception) -> Attempt:
    args["error"] = exc
    for errback in errbacks:
        try:
            errback(args)
        except CancelJob:
            return Attempt(Outcome.FAILED_CANCELLED, args, exc)
        except Exception as eb_exc:
            _errback_raised(args, eb_exc)
            break
    return Attempt(Outcome.FAILED, args, exc)


def _errback_raised(args: dict[str, Any], eb_exc: Exception) -> None:
    log.warning(
        "an errback raised %s: %s; skipping the remaining errbacks", type(eb_exc).__name__, eb_exc
    )
    args["errback_error"] = eb_exc


async def _call(step: Step, args: dict[str, Any]) -> None:
    result = step(args)
    if inspect.isawaitable(result):
        await result


async def run_async(
    entry: JobEntry,
    args: dict[str, Any],
    fresh_args: Callable[[], dict[str, Any]],
    *,
    executor: Executor | None = None,
) -> Attempt:
    """Run a chain that has ``async def`` steps or a body deferred to a worker thread.

    Args:
        entry: the job's steps.
        args: the attempt's args dict.
        fresh_args: builds the pre-attempt args again, for the errbacks.
        executor: when given, a ``def`` body runs there (``defer=True``) instead of on the loop;
            callbacks and errbacks still run on the loop, in order.
    """
    loop = asyncio.get_running_loop()
    try:
        if executor is not None and not inspect.iscoroutinefunction(entry.body):
            await loop.run_in_executor(executor, entry.body, args)
        else:
            await _call(entry.body, args)
        for callback in entry.callbacks:
            await _call(callback, args)
    except CancelJob:
        return Attempt(Outcome.CANCELLED, args, None)
    except Exception as exc:
        eargs = fresh_args()
        eargs["error"] = exc
        for errback in entry.errbacks:
            try:
                await _call(errback, eargs)
            except CancelJob:
                return Attempt(Outcome.FAILED_CANCELLED, eargs, exc)
            except Exception as eb_exc:
                _errback_raised(eargs, eb_exc)
                break
        return Attempt(Outcome.FAILED, eargs, exc)
    return Attempt(Outcome.DONE, args, None)
