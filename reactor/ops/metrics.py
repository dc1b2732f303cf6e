"""Prometheus metrics for a node or a distributor: one :class:`Metrics` per process part, each
with a private registry, and :meth:`Metrics.serve` to expose it over HTTP.

Every name starts with ``reactor_``. The only label is the job name (``job_name``), whose values
are the job names the node knows, so the number of series stays bounded: never a job id, a node
name or an error message (``reactor_jobs_pruned_total`` alone is labelled by ``status``, one of
three final statuses). The drivers add to plain counters (:mod:`reactor.ops.tally`); the
exposition is built from them, and from the driver's own state, only when ``/metrics`` is read.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from reactor.core.jobstate import JobState
from reactor.errors import MetricsPortError
from reactor.jobs import record as R
from reactor.jobs.record import JobRecord
from reactor.ops.health import Health, serve
from reactor.ops.tally import (
    CANCELLED,
    COUNTERS,
    FAILED,
    FOLD_AT,
    RECEIVED,
    RETRIED,
    STARTED,
    SUCCEEDED,
    Hist,
    JobTally,
)

__all__ = ["MAX_JOB_NAMES", "OUTCOMES", "Metrics", "MetricsServer", "Outcome", "State"]

Outcome = Literal["succeeded", "failed", "retried", "cancelled"]
#: What :meth:`Metrics.job_finished` accepts as an attempt's outcome.
OUTCOMES: Final = ("succeeded", "failed", "retried", "cancelled")
_OUTCOME_INDEX: Final = {
    "succeeded": SUCCEEDED,
    "failed": FAILED,
    "retried": RETRIED,
    "cancelled": CANCELLED,
}

#: Distinct job names given their own series; later names share the label ``_other``.
MAX_JOB_NAMES: Final = 200
#: An attempt's outcome by the record's status once the node has applied it.
_BY_STATUS: Final = {
    R.COMPLETE: SUCCEEDED,
    R.QUEUED: SUCCEEDED,  # a periodic job's run succeeded; it waits for its next one
    R.ERROR: RETRIED,
    R.FAILED: FAILED,
    R.CANCELLED: CANCELLED,
}

#: Job run times: from a millisecond to ten minutes.
_RUN_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)
#: Queue waits and feedback lags: from a millisecond to an hour.
_WAIT_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0)
#: Storage writes: from a tenth of a millisecond to five seconds.
_WRITE_BUCKETS: Final = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5)

#: (name, help) of the per-name counters, in :data:`reactor.ops.tally.COUNTERS` order.
_COUNTER_TEXT: Final = (
    ("reactor_jobs_received", "Jobs received by a node (new assignments)."),
    ("reactor_jobs_started", "Job attempts started."),
    ("reactor_jobs_succeeded", "Attempts that succeeded (each run of a periodic job)."),
    ("reactor_jobs_failed", "Jobs that failed for good (no attempt left)."),
    ("reactor_jobs_retried", "Failed attempts followed by a retry."),
    ("reactor_jobs_cancelled", "Jobs cancelled (CancelJob or a cancel)."),
)
assert len(_COUNTER_TEXT) == len(COUNTERS)
#: (attribute of JobTally, name, help) of the per-name histograms.
_HIST_TEXT: Final = (
    ("run", "reactor_run_duration_seconds", "How long an attempt ran, body and callbacks."),
    (
        "wait",
        "reactor_queue_wait_seconds",
        "From enqueue (or the due time of a deferred or retried job) to the attempt's start.",
    ),
    (
        "lag",
        "reactor_feedback_lag_seconds",
        "At a distributor: from enqueue (or the due time) to the job's final feedback.",
    ),
)


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
    #: Jobs waiting for a limit now, per (job name, limit kind); and the waits that ended in a
    #: start, per (job name, limit kind): (count, seconds in all). Issue 20.
    limit_waiting: Mapping[tuple[str, str], int] = field(default_factory=dict)
    limit_waits: Mapping[tuple[str, str], tuple[int, float]] = field(default_factory=dict)


class Metrics:
    """The counters, gauges and histograms of one node or distributor.

    The drivers call the small methods below at the matching moments, from their event loop's
    thread; each adds to a plain int or appends to a list (see :mod:`reactor.ops.tally`). Gauges (in
    flight, waiting, storage down) and the rejected-frame count are read from the driver's own
    state when ``/metrics`` is scraped (:meth:`read_state`).

    Args:
        registry: where the collector is registered; a new private one by default, so two
            nodes in one process (or a test) never clash.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self._tallies: dict[str, JobTally] = {}
        self._other: JobTally | None = None
        self._lock = threading.Lock()
        self.reconnects = 0
        self.storage_write = Hist(_WRITE_BUCKETS)
        # Fallback gauges for drivers that count instead of being read (and for tests).
        self._in_flight: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        self._storage_down = False
        self._rejected = 0
        #: Kept records the node's pruner removed, by status (``reactor_jobs_pruned_total``).
        self.pruned: Counter[str] = Counter()
        #: Workflows started, continued (a dead member's), succeeded, failed and cancelled
        #: (``reactor_flows_total``).
        self.flows: Counter[str] = Counter()
        self._reader: Callable[[], State] | None = None
        self.registry.register(_Collector(self))

    def tally(self, name: str) -> JobTally:
        """The counters of job ``name``; past :data:`MAX_JOB_NAMES` names, those of ``_other``."""
        found = self._tallies.get(name)
        if found is not None:
            return found
        with self._lock:  # the scrape thread iterates the dict
            found = self._tallies.get(name)
            if found is None:
                if len(self._tallies) >= MAX_JOB_NAMES:
                    if self._other is None:
                        self._other = JobTally(_RUN_BUCKETS, _WAIT_BUCKETS, _WAIT_BUCKETS)
                    return self._other
                found = JobTally(_RUN_BUCKETS, _WAIT_BUCKETS, _WAIT_BUCKETS)
                self._tallies = {**self._tallies, name: found}  # readers keep their copy
            return found

    def tallies(self) -> dict[str, JobTally]:
        """Every job name's counters, ``_other`` included (for the exposition)."""
        found = dict(self._tallies)
        if self._other is not None:
            found["_other"] = self._other
        return found

    # -- node hooks (records) --------------------------------------------------------------------

    def records_received(self, records: Iterable[JobRecord]) -> None:
        """A node took these new jobs."""
        for record in records:
            self.tally(record.name).counts[RECEIVED] += 1

    def attempt_started(self, record: JobRecord, wall: float) -> None:
        """An attempt of ``record`` starts at epoch ``wall``; call before the node marks it
        running (its ``run_at`` still says when it was due)."""
        # Per job on the node's hot path: tally() and Hist.add() inlined (a call each saved).
        t = self._tallies.get(record.name) or self.tally(record.name)
        t.counts[STARTED] += 1
        since = record.run_at if record.run_at > record.enqueued_at else record.enqueued_at
        if since:
            pending = t.wait.pending
            pending.append(wall - since if wall > since else 0.0)
            if len(pending) >= FOLD_AT:
                t.wait.fold()

    def attempt_ended(self, record: JobRecord, seconds: float) -> None:
        """An attempt of ``record`` ran ``seconds``; the node has applied its outcome."""
        t = self._tallies.get(record.name) or self.tally(record.name)
        pending = t.run.pending
        pending.append(seconds)
        if len(pending) >= FOLD_AT:
            t.run.fold()
        outcome = _BY_STATUS.get(record.status)
        if outcome is not None:
            t.counts[outcome] += 1

    def record_cancelled(self, record: JobRecord | JobState) -> None:
        """A job ended cancelled without an attempt that ran: on a node, ``handle.cancel()`` of a
        waiting job or ``reactor monitor destroy``; at a distributor, a cancel of a job no node
        holds (a cancelled attempt is counted by its end)."""
        self.tally(record.name).counts[CANCELLED] += 1

    def record_failed(self, record: JobRecord) -> None:
        """A job failed without running (unknown name, args that do not decode)."""
        self.tally(record.name).counts[FAILED] += 1

    def feedback_received(self, name: str, lag: float) -> None:
        """A distributor got a job's final feedback ``lag`` seconds after it was due."""
        hist = (self._tallies.get(name) or self.tally(name)).lag
        pending = hist.pending
        pending.append(lag if lag > 0.0 else 0.0)
        if len(pending) >= FOLD_AT:
            hist.fold()

    # -- by name (tests, drivers that count) -----------------------------------------------------

    def job_received(self, name: str, waiting: int = 1) -> None:
        """A node took a new job of ``name``; it now waits (``waiting`` more such jobs)."""
        self.tally(name).counts[RECEIVED] += 1
        self._waiting[name] += waiting

    def job_started(self, name: str, queue_wait: float | None = None) -> None:
        """An attempt of ``name`` starts after waiting ``queue_wait`` seconds (None: unknown);
        one job moves from waiting to in flight."""
        t = self.tally(name)
        t.counts[STARTED] += 1
        self._waiting[name] -= 1
        self._in_flight[name] += 1
        if queue_wait is not None:
            t.wait.add(max(0.0, queue_wait))

    def job_finished(self, name: str, outcome: Outcome, duration: float) -> None:
        """An attempt of ``name`` ended after ``duration`` seconds with ``outcome``
        (``succeeded``, ``failed`` for good, ``retried``: it waits again, or ``cancelled``).

        Raises:
            ValueError: an unknown outcome.
        """
        index = _OUTCOME_INDEX.get(outcome)
        if index is None:
            raise ValueError(f"unknown outcome {outcome!r}; valid: {', '.join(OUTCOMES)}")
        t = self.tally(name)
        t.counts[index] += 1
        t.run.add(max(0.0, duration))
        self._in_flight[name] -= 1
        if outcome == "retried":
            self._waiting[name] += 1

    def job_dropped(self, name: str) -> None:
        """A waiting job of ``name`` left without running (cancelled, handed back, reassigned)."""
        self._waiting[name] -= 1

    # -- links and storage -------------------------------------------------------------------

    def reconnected(self) -> None:
        """A connection to a peer was established again."""
        self.reconnects += 1

    def frame_rejected(self) -> None:
        """A malformed, oversized or unknown frame was dropped."""
        self._rejected += 1

    def storage_written(self, seconds: float) -> None:
        """A storage write took ``seconds``; storage is reachable."""
        self.storage_write.add(max(0.0, seconds))
        self._storage_down = False

    def jobs_pruned(self, status: str, count: int) -> None:
        """The pruner removed ``count`` kept records of ``status`` (kept_jobs_ttl/_max)."""
        self.pruned[status] += count

    def flow_started(self) -> None:
        """A distributor started a workflow."""
        self.flows["started"] += 1

    def flow_ended(self, outcome: str) -> None:
        """A workflow ended: ``succeeded``, ``failed`` or ``cancelled``."""
        self.flows[outcome] += 1

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
            in_flight=dict(self._in_flight),
            waiting=dict(self._waiting),
            storage_down=self._storage_down,
            rejected_frames=self._rejected,
        )

    # -- exposition --------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def serve(
        self, port: int, host: str = "127.0.0.1", *, health: Health | None = None
    ) -> MetricsServer:
        """Serve ``/metrics`` over HTTP on ``host:port`` from a daemon thread.

        Args:
            port: the port; 0 picks a free one (see the result's ``port``).
            host: the address to bind; loopback by default, ``0.0.0.0`` for every interface.
            health: answers ``/healthz`` and ``/readyz`` too (see :mod:`reactor.ops.health`).

        Returns:
            The running server; ``close()`` it to stop.

        Raises:
            MetricsPortError: the address cannot be bound (the port is busy, ...).
        """
        try:
            if health is not None:
                server, thread = serve(self.registry, health, port, host)
            else:
                server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise MetricsPortError(host, port, exc.strerror or str(exc)) from None
        return _Server(server, thread)


class _Collector(Collector):
    """Builds every family from the tallies and :meth:`Metrics.state` at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return self._families({}, State(), 0, Hist(_WRITE_BUCKETS))

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        yield from self._families(m.tallies(), m.state(), m.reconnects, m.storage_write)
        yield _by_label(
            "reactor_jobs_pruned",
            "Kept records removed by the node's pruner (kept_jobs_ttl, kept_jobs_max).",
            "status",
            m.pruned,
        )
        yield _by_label(
            "reactor_flows",
            "Workflows by event: started, continued, succeeded, failed, cancelled (distributor).",
            "event",
            m.flows,
        )

    @staticmethod
    def _families(
        tallies: dict[str, JobTally], state: State, reconnects: int, writes: Hist
    ) -> Iterator[Metric]:
        names = sorted(tallies)
        for i, (key, text) in enumerate(_COUNTER_TEXT):
            counter = CounterMetricFamily(key, text, labels=["job_name"])
            for name in names:
                counter.add_metric([name], tallies[name].counts[i])
            yield counter
        for attribute, key, text in _HIST_TEXT:
            hist = HistogramMetricFamily(key, text, labels=["job_name"])
            for name in names:
                h: Hist = getattr(tallies[name], attribute)
                hist.add_metric([name], *_buckets(h))
            yield hist
        for key, text, values in (
            ("reactor_in_flight", "Attempts running now.", state.in_flight),
            (
                "reactor_waiting",
                "Jobs held but not running (due, deferred or retrying).",
                state.waiting,
            ),
        ):
            gauge = GaugeMetricFamily(key, text, labels=["job_name"])
            for name, count in sorted(values.items()):
                gauge.add_metric([name], count)
            yield gauge
        yield CounterMetricFamily(
            "reactor_reconnects", "Connections to a peer established again.", value=reconnects
        )
        yield CounterMetricFamily(
            "reactor_rejected_frames",
            "Malformed, oversized or unknown frames dropped.",
            value=state.rejected_frames,
        )
        yield from _limit_families(state)
        write = HistogramMetricFamily(
            "reactor_storage_write_seconds", "How long one storage write (a batch) took."
        )
        write.add_metric([], *_buckets(writes))
        yield write
        yield GaugeMetricFamily(
            "reactor_storage_unavailable",
            "1 while storage cannot be reached, else 0.",
            value=1 if state.storage_down else 0,
        )


def _limit_families(state: State) -> Iterator[Metric]:
    """The flow-control families, labelled by job name and limit kind (concurrency, rate): the
    limit keys themselves are the application's and unbounded, so they are no label."""
    labels = ["job_name", "limit"]
    waiting = GaugeMetricFamily(
        "reactor_limit_waiting",
        "Jobs due but waiting for a concurrency or rate limit.",
        labels=labels,
    )
    for (name, kind), count in sorted(state.limit_waiting.items()):
        waiting.add_metric([name, kind], count)
    yield waiting
    waited = SummaryMetricFamily(
        "reactor_limit_wait_seconds",
        "How long jobs waited for a concurrency or rate limit before they started.",
        labels=labels,
    )
    for (name, kind), (count, seconds) in sorted(state.limit_waits.items()):
        waited.add_metric([name, kind], count_value=count, sum_value=seconds)
    yield waited


def _by_label(key: str, text: str, label: str, counts: Counter[str]) -> Metric:
    """A counter family with one sample per label value (read with one C-level copy)."""
    family = CounterMetricFamily(key, text, labels=[label])
    for value, count in sorted(dict(counts).items()):
        family.add_metric([value], count)
    return family


def _buckets(h: Hist) -> tuple[list[tuple[str, float]], float]:
    """A Hist as HistogramMetricFamily.add_metric's buckets and sum."""
    cumulative, _count, total = h.read()
    bounds = [repr(float(b)) for b in h.bounds] + ["+Inf"]
    return list(zip(bounds, cumulative, strict=True)), total


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
