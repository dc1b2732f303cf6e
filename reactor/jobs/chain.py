"""Runs one attempt of a job's chain: the body and callbacks, or on an exception the errbacks.

Plain functions with no sockets and no storage, so they can be tested on their own. A chain whose
steps are all ``def`` runs synchronously (no task, no coroutine); one with an ``async def`` step,
or with ``defer=True``, runs as a coroutine.

A time limit covers the body and its callbacks (the errbacks run after it, with the
:class:`~reactor.errors.TimeLimitExceeded` as ``args["error"]``): a coroutine is cancelled at the
limit, a deferred body is abandoned to its thread, and a ``def`` chain on the loop, which nothing
can interrupt, fails as soon as a step returns past the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from reactor.errors import CancelJob, TimeLimitExceeded
from reactor.jobs.outcome import Attempt, Outcome
from reactor.jobs.registry import JobEntry, Step

log = logging.getLogger("reactor.chain")


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


def run_sync_limited(
    entry: JobEntry,
    args: dict[str, Any],
    fresh_args: Callable[[], dict[str, Any]],
    timeout: float,
) -> Attempt:
    """:func:`run_sync` under a time limit it cannot enforce: a step that returns after
    ``timeout`` seconds fails the attempt at once (later callbacks do not run)."""
    deadline = time.monotonic() + timeout
    try:
        for step in (entry.body, *entry.callbacks):
            step(args)
            if time.monotonic() > deadline:
                raise over_limit(entry.name, timeout)
    except CancelJob:
        return Attempt(Outcome.CANCELLED, args, None)
    except Exception as exc:
        return _errbacks_sync(entry.errbacks, fresh_args(), exc)
    return Attempt(Outcome.DONE, args, None)


def over_limit(name: str, timeout: float) -> TimeLimitExceeded:
    """The error of an attempt of job ``name`` that ran past ``timeout`` seconds."""
    return TimeLimitExceeded(
        f"job {name!r} ran past its {timeout:g} s timeout; raise timeout= (on @job or at "
        "enqueue) or make the job finish sooner"
    )


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


def _in_own_thread(fn: Step, args: dict[str, Any]) -> asyncio.Future[Any]:
    """Run ``fn(args)`` in a daemon thread of its own: a deferred body under a time limit, which
    may be abandoned without holding a pool thread (or the interpreter's exit) for good."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, exc: BaseException | None) -> None:
        if future.done():  # abandoned at the time limit: the result is ignored
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    context = contextvars.copy_context()  # the attempt's span (tracing) is current there too

    def run() -> None:
        try:
            result, exc = context.run(fn, args), None
        except BaseException as error:  # CancelJob too: the loop side decides
            result, exc = None, error
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it any more
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=run, name="reactor-timed-defer", daemon=True).start()
    return future


async def _steps(
    entry: JobEntry, args: dict[str, Any], executor: Executor | None, limited: bool
) -> None:
    """The body (in ``executor`` or its own thread for a deferred ``def`` body) and callbacks."""
    if executor is not None and not inspect.iscoroutinefunction(entry.body):
        if limited:
            await _in_own_thread(entry.body, args)
        else:
            # run_in_executor does not carry context variables: the attempt's span would not be
            # current in the body (asyncio.to_thread does the same)
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(executor, context.run, entry.body, args)
    else:
        await _call(entry.body, args)
    for callback in entry.callbacks:
        await _call(callback, args)


async def run_async(
    entry: JobEntry,
    args: dict[str, Any],
    fresh_args: Callable[[], dict[str, Any]],
    *,
    executor: Executor | None = None,
    timeout: float | None = None,
) -> Attempt:
    """Run a chain that has ``async def`` steps or a body deferred to a worker thread.

    Args:
        entry: the job's steps.
        args: the attempt's args dict.
        fresh_args: builds the pre-attempt args again, for the errbacks.
        executor: when given, a ``def`` body runs there (``defer=True``) instead of on the loop;
            callbacks and errbacks still run on the loop, in order.
        timeout: seconds the body and callbacks may take; past it the attempt fails with
            TimeLimitExceeded (a coroutine is cancelled, a deferred body abandoned to a thread
            of its own, whose result is ignored).
    """
    try:
        if timeout is None:
            await _steps(entry, args, executor, False)
        else:
            deadline = time.monotonic() + timeout
            try:
                async with asyncio.timeout(timeout) as limit:
                    await _steps(entry, args, executor, True)
            except TimeoutError:
                if not limit.expired():
                    raise  # the job's own TimeoutError
                raise over_limit(entry.name, timeout) from None
            if time.monotonic() > deadline:  # a def step held the loop past the limit
                raise over_limit(entry.name, timeout)
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
