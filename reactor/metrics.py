"""Prometheus metrics for a node or a distributor: one :class:`Metrics` per process part, each
with a private registry, and :meth:`Metrics.serve` to expose it over HTTP.

Every name starts with ``reactor_``. The only label is the job name (``job``), whose values are
the job names the registry knows, so the number of series stays bounded: never a job id, a node
name or an error message.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reactor import record as R
from reactor.record import JobRecord

__all__ = ["MAX_JOB_NAMES", "OUTCOMES", "JobSeries", "Metrics", "MetricsServer", "Outcome", "State"]

Outcome = Literal["succeeded", "failed", "retried", "cancelled"]
#: What :meth:`Metrics.job_finished` accepts as an attempt's outcome.
OUTCOMES: Final = ("succeeded", "failed", "retried", "cancelled")

#: Distinct job names given their own series; later names share the label ``_other``.
MAX_JOB_NAMES: Final = 200
#: What an attempt's outcome is, by the record's status once the node has applied it.
_BY_STATUS: Final[dict[str, Outcome]] = {
    R.COMPLETE: "succeeded",
    R.QUEUED: "succeeded",  # a periodic job's run succeeded; it waits for its next one
    R.ERROR: "retried",
    R.FAILED: "failed",
    R.CANCELLED: "cancelled",
}

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


@dataclass
class State:
    """What a driver reads from its own state when ``/metrics`` is scraped (no per-job cost)."""

    in_flight: Mapping[str, int] = field(default_factory=dict)
    waiting: Mapping[str, int] = field(default_factory=dict)
    storage_down: bool = False
    rejected_frames: int = 0


class JobSeries:
    """The collectors' children for one job name, looked up once and kept (``.inc()`` is cheap)."""

    __slots__ = (
        "cancelled",
        "failed",
        "lag",
        "received",
        "retried",
        "run",
        "started",
        "succeeded",
        "wait",
    )

    def __init__(self, m: Metrics, name: str) -> None:
        self.received = m.received.labels(name)
        self.started = m.started.labels(name)
        self.succeeded = m.succeeded.labels(name)
        self.failed = m.failed.labels(name)
        self.retried = m.retried.labels(name)
        self.cancelled = m.cancelled.labels(name)
        self.run = m.run_duration.labels(name)
        self.wait = m.queue_wait.labels(name)
        self.lag = m.feedback_lag.labels(name)


class Metrics:
    """The counters, gauges and histograms of one node or distributor.

    Counters and histograms are fed by the drivers at the matching moments through cached
    per-name children (:meth:`series`). Gauges (in flight, waiting, storage down) and the
    rejected-frame count are read from the driver's own state only when ``/metrics`` is
    scraped (:meth:`read_state`), so keeping them costs nothing per job.

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
            "reactor_jobs_succeeded", "Jobs (or periodic runs) that succeeded.", job, registry=r
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
            "From enqueue (or the due time of a deferred or retried job) to the attempt's start.",
            job,
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.feedback_lag = Histogram(
            "reactor_feedback_lag_seconds",
            "At a distributor: from enqueue (or the due time) to the job's final feedback.",
            job,
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            "reactor_reconnects", "Connections to a peer established again.", registry=r
        )
        self.storage_write = Histogram(
            "reactor_storage_write_seconds",
            "How long one storage write (a batch) took.",
            buckets=_WRITE_BUCKETS,
            registry=r,
        )
        self._outcomes: Final = {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "cancelled": self.cancelled,
        }
        self._series: dict[str, JobSeries] = {}
        self._other: JobSeries | None = None
        self._lock = threading.Lock()
        # Fallback state for drivers that count instead of being read (and for tests).
        self._in_flight: Tally[str] = Tally()
        self._waiting: Tally[str] = Tally()
        self._storage_down = False
        self._rejected = 0
        self._reader: Callable[[], State] | None = None
        r.register(_StateCollector(self))

    # -- per-name series -------------------------------------------------------------------------

    def series(self, name: str) -> JobSeries:
        """The cached children for job ``name``; past :data:`MAX_JOB_NAMES` names, ``_other``."""
        found = self._series.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._series.get(name)
            if found is None:
                if len(self._series) >= MAX_JOB_NAMES:
                    if self._other is None:
                        self._other = JobSeries(self, "_other")
                    return self._other
                found = self._series[name] = JobSeries(self, name)
            return found

    # -- node hooks (records) --------------------------------------------------------------------

    def records_received(self, records: Iterable[JobRecord]) -> None:
        """A node took these new jobs."""
        for record in records:
            self.series(record.name).received.inc()

    def attempt_started(self, record: JobRecord, wall: float) -> None:
        """An attempt of ``record`` starts at epoch ``wall``; call before the node marks it
        running (its ``run_at`` still says when it was due)."""
        s = self.series(record.name)
        s.started.inc()
        since = record.run_at if record.run_at > record.enqueued_at else record.enqueued_at
        if since:
            s.wait.observe(max(0.0, wall - since))

    def attempt_ended(self, record: JobRecord, seconds: float) -> None:
        """An attempt of ``record`` ran ``seconds``; the node has applied its outcome."""
        s = self.series(record.name)
        s.run.observe(max(0.0, seconds))
        outcome = _BY_STATUS.get(record.status)
        if outcome is not None:
            getattr(s, outcome).inc()

    def record_failed(self, record: JobRecord) -> None:
        """A job failed without running (unknown name, args that do not decode)."""
        self.series(record.name).failed.inc()

    # -- driver-facing methods by name (tests, other drivers) ------------------------------------

    def job_received(self, name: str, waiting: int = 1) -> None:
        """A node took a new job of ``name``; it now waits (``waiting`` more such jobs)."""
        self.series(name).received.inc()
        if waiting:
            self._waiting[name] += waiting

    def job_started(self, name: str, queue_wait: float | None = None) -> None:
        """An attempt of ``name`` starts after waiting ``queue_wait`` seconds (None: unknown).

        Moves one job from waiting to in flight.
        """
        s = self.series(name)
        s.started.inc()
        self._waiting[name] -= 1
        self._in_flight[name] += 1
        if queue_wait is not None:
            s.wait.observe(max(0.0, queue_wait))

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
        if outcome not in self._outcomes:
            raise ValueError(f"unknown outcome {outcome!r}; valid: {', '.join(OUTCOMES)}")
        s = self.series(name)
        getattr(s, outcome).inc()
        self._in_flight[name] -= 1
        s.run.observe(max(0.0, duration))
        if outcome == "retried":
            self._waiting[name] += 1

    def job_ended(self, name: str, outcome: Outcome) -> None:
        """A job of ``name`` ended with ``outcome`` (a distributor counting final feedback)."""
        getattr(self.series(name), outcome).inc()

    def job_dropped(self, name: str) -> None:
        """A waiting job of ``name`` left without running (cancelled, handed back, reassigned)."""
        self._waiting[name] -= 1

    def set_waiting(self, name: str, count: int) -> None:
        """Set how many jobs of ``name`` wait (for drivers that count rather than track)."""
        self._waiting[name] = count

    def set_in_flight(self, name: str, count: int) -> None:
        """Set how many attempts of ``name`` run now."""
        self._in_flight[name] = count

    def feedback_received(self, name: str, lag: float) -> None:
        """A distributor got a job's final feedback ``lag`` seconds after it was due."""
        self.series(name).lag.observe(max(0.0, lag))

    # -- links and storage -------------------------------------------------------------------

    def reconnected(self) -> None:
        """A connection to a peer was established again."""
        self.reconnects.inc()

    def frame_rejected(self) -> None:
        """A malformed, oversized or unknown frame was dropped."""
        self._rejected += 1

    def storage_written(self, seconds: float) -> None:
        """A storage write took ``seconds``; storage is reachable."""
        self.storage_write.observe(max(0.0, seconds))
        self._storage_down = False

    def storage_down(self, down: bool = True) -> None:
        """Storage became unreachable (``down=False``: reachable again)."""
        self._storage_down = down

    def read_state(self, reader: Callable[[], State] | None) -> None:
        """Read the gauges from ``reader`` at each scrape (from the server's thread: it must only
        read, and copy containers with one C-level call such as ``list(d.values())``)."""
        self._reader = reader

    def state(self) -> State:
        """The gauges' values now: the reader's, or the counted ones."""
        reader = self._reader
        if reader is not None:
            read = reader()
            read.rejected_frames += self._rejected
            return read
        return State(
            in_flight={k: v for k, v in self._in_flight.items()},
            waiting={k: v for k, v in self._waiting.items()},
            storage_down=self._storage_down,
            rejected_frames=self._rejected,
        )

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


class _StateCollector(Collector):
    """Yields the gauges and the rejected-frame count from :meth:`Metrics.state` at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families(State())

    def collect(self) -> Iterable[Metric]:
        return self._families(self._metrics.state())

    @staticmethod
    def _families(state: State) -> Iterator[Metric]:
        for key, text, values in (
            ("reactor_in_flight", "Attempts running now.", state.in_flight),
            (
                "reactor_waiting",
                "Jobs held but not running (due, deferred or retrying).",
                state.waiting,
            ),
        ):
            family = GaugeMetricFamily(key, text, labels=["job_name"])
            for name, count in sorted(values.items()):
                family.add_metric([name], count)
            yield family
        yield GaugeMetricFamily(
            "reactor_storage_unavailable",
            "1 while storage cannot be reached, else 0.",
            value=1 if state.storage_down else 0,
        )
        yield CounterMetricFamily(
            "reactor_rejected_frames",
            "Malformed, oversized or unknown frames dropped.",
            value=state.rejected_frames,
        )


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
