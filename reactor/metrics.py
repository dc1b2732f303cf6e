"""Prometheus metrics for a node or a distributor: one :class:`Metrics` per process part, each
with a private registry, and :meth:`Metrics.serve` to expose it over HTTP.

Every name starts with ``reactor_``. The only label is the job name (``job``), whose values are
the job names the registry knows, so the number of series stays bounded: never a job id, a node
name or an error message.
"""

from __future__ import annotations

import threading
from typing import Final, Literal, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

__all__ = ["OUTCOMES", "Metrics", "MetricsServer", "Outcome"]

Outcome = Literal["succeeded", "failed", "retried", "cancelled"]
#: What :meth:`Metrics.job_finished` accepts as an attempt's outcome.
OUTCOMES: Final = ("succeeded", "failed", "retried", "cancelled")

#: Job run times: from a millisecond to ten minutes.
_RUN_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)
#: Queue waits and feedback lags: from a millisecond to an hour.
_WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0)
#: Storage writes: from a tenth of a millisecond to five seconds.
_WRITE_BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5)


class MetricsServer(Protocol):
    """What :meth:`Metrics.serve` returns."""

    @property
    def port(self) -> int:
        """The port it listens on (useful when asked for port 0)."""
        ...

    def close(self) -> None:
        """Stop serving and free the port."""
        ...


class Metrics:
    """The counters, gauges and histograms of one node or distributor.

    The node and distributor drivers call the small methods below at the matching moments; each
    costs a dictionary lookup and a lock, cheap enough for every job.

    Args:
        registry: where the collectors are registered; a new private one by default, so two
            nodes in one process (or a test) never clash.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        r = self.registry
        job = ("job_name",)  # not "job": Prometheus gives every target a "job" label
        self.received = Counter(
            "reactor_jobs_received", "Jobs received by a node (new assignments).", job, registry=r
        )
        self.started = Counter("reactor_jobs_started", "Job attempts started.", job, registry=r)
        self.succeeded = Counter(
            "reactor_jobs_succeeded", "Jobs that ended in success.", job, registry=r
        )
        self.failed = Counter(
            "reactor_jobs_failed", "Jobs that failed for good (no attempt left).", job, registry=r
        )
        self.retried = Counter(
            "reactor_jobs_retried", "Failed attempts followed by a retry.", job, registry=r
        )
        self.cancelled = Counter(
            "reactor_jobs_cancelled", "Jobs cancelled (CancelJob or a cancel).", job, registry=r
        )
        self.run_duration = Histogram(
            "reactor_run_duration_seconds",
            "How long an attempt ran, body and callbacks.",
            job,
            buckets=_RUN_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "reactor_queue_wait_seconds",
            "From enqueue (or the due time of a deferred job) to the attempt's start.",
            job,
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("reactor_in_flight", "Attempts running now.", job, registry=r)
        self.waiting = Gauge(
            "reactor_waiting", "Jobs held but not running (due, deferred or retrying).", job,
            registry=r,
        )  # fmt: skip
        self.feedback_lag = Histogram(
            "reactor_feedback_lag_seconds",
            "From a job's end on its node to its feedback reaching the distributor.",
            job,
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            "reactor_reconnects", "Connections to a peer established again.", registry=r
        )
        self.rejected_frames = Counter(
            "reactor_rejected_frames",
            "Malformed, oversized or unknown frames dropped.",
            registry=r,
        )
        self.storage_write = Histogram(
            "reactor_storage_write_seconds",
            "How long one storage write (a batch) took.",
            buckets=_WRITE_BUCKETS,
            registry=r,
        )
        self.storage_unavailable = Gauge(
            "reactor_storage_unavailable", "1 while storage cannot be reached, else 0.", registry=r
        )
        self._outcomes: Final = {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "cancelled": self.cancelled,
        }

    # -- jobs --------------------------------------------------------------------------------

    def job_received(self, name: str, waiting: int = 1) -> None:
        """A node took a new job of ``name``; it now waits (``waiting`` more such jobs)."""
        self.received.labels(name).inc()
        if waiting:
            self.waiting.labels(name).inc(waiting)

    def job_started(self, name: str, queue_wait: float | None = None) -> None:
        """An attempt of ``name`` starts after waiting ``queue_wait`` seconds (None: unknown).

        Moves one job from waiting to in flight.
        """
        self.started.labels(name).inc()
        self.waiting.labels(name).dec()
        self.in_flight.labels(name).inc()
        if queue_wait is not None:
            self.queue_wait.labels(name).observe(max(0.0, queue_wait))

    def job_finished(self, name: str, outcome: Outcome, duration: float) -> None:
        """An attempt of ``name`` ended after ``duration`` seconds.

        Args:
            name: the job name.
            outcome: ``succeeded``, ``failed`` (for good), ``retried`` (a retry follows: the job
                is waiting again) or ``cancelled``.
            duration: the attempt's run time in seconds.

        Raises:
            ValueError: an unknown outcome.
        """
        counter = self._outcomes.get(outcome)
        if counter is None:
            raise ValueError(f"unknown outcome {outcome!r}; valid: {', '.join(OUTCOMES)}")
        counter.labels(name).inc()
        self.in_flight.labels(name).dec()
        self.run_duration.labels(name).observe(max(0.0, duration))
        if outcome == "retried":
            self.waiting.labels(name).inc()

    def job_dropped(self, name: str) -> None:
        """A waiting job of ``name`` left without running (cancelled, handed back, reassigned)."""
        self.waiting.labels(name).dec()

    def set_waiting(self, name: str, count: int) -> None:
        """Set how many jobs of ``name`` wait (for drivers that count rather than track)."""
        self.waiting.labels(name).set(count)

    def set_in_flight(self, name: str, count: int) -> None:
        """Set how many attempts of ``name`` run now."""
        self.in_flight.labels(name).set(count)

    def feedback_received(self, name: str, lag: float) -> None:
        """A distributor got a job's feedback ``lag`` seconds after the job ended on its node."""
        self.feedback_lag.labels(name).observe(max(0.0, lag))

    # -- links and storage -------------------------------------------------------------------

    def reconnected(self) -> None:
        """A connection to a peer was established again."""
        self.reconnects.inc()

    def frame_rejected(self) -> None:
        """A malformed, oversized or unknown frame was dropped."""
        self.rejected_frames.inc()

    def storage_written(self, seconds: float) -> None:
        """A storage write took ``seconds``; storage is reachable."""
        self.storage_write.observe(max(0.0, seconds))
        self.storage_unavailable.set(0)

    def storage_down(self, down: bool = True) -> None:
        """Storage became unreachable (``down=False``: reachable again)."""
        self.storage_unavailable.set(1 if down else 0)

    # -- exposition --------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` over HTTP on ``host:port`` from a daemon thread.

        Args:
            port: the port; 0 picks a free one (see the result's ``port``).
            host: the address to bind; loopback by default, ``0.0.0.0`` for every interface.

        Returns:
            The running server; ``close()`` it to stop.

        Raises:
            OSError: the address cannot be bound.
        """
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return _Server(server, thread)


class _Server:
    """prometheus-client's WSGI server and its thread, closable."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
