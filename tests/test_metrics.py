"""reactor.metrics: the collectors, the driver-facing methods, and /metrics over HTTP."""

from __future__ import annotations

import re
import urllib.request

import pytest

from reactor.ops.metrics import Metrics


def _value(text: str, sample: str) -> float:
    """The value of one exposition line, e.g. ``reactor_jobs_started_total{job_name="a"}``."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in:\n{text}"
    return float(match.group(1))


def test_job_lifecycle_counts() -> None:
    m = Metrics()
    for _ in range(3):
        m.job_received("mail")
    m.job_started("mail", queue_wait=0.02)
    m.job_finished("mail", "succeeded", 0.5)
    m.job_started("mail", queue_wait=0.03)
    m.job_finished("mail", "retried", 0.1)
    m.job_started("mail", queue_wait=None)
    m.job_finished("mail", "failed", 0.2)
    m.job_dropped("mail")
    m.job_received("sms", waiting=0)
    m.feedback_received("mail", 0.004)
    text = m.exposition().decode()
    assert _value(text, 'reactor_jobs_received_total{job_name="mail"}') == 3
    assert _value(text, 'reactor_jobs_started_total{job_name="mail"}') == 3
    assert _value(text, 'reactor_jobs_succeeded_total{job_name="mail"}') == 1
    assert _value(text, 'reactor_jobs_retried_total{job_name="mail"}') == 1
    assert _value(text, 'reactor_jobs_failed_total{job_name="mail"}') == 1
    assert _value(text, 'reactor_in_flight{job_name="mail"}') == 0
    # waiting: 3 received, 3 started, 1 back after a retry, 1 dropped
    assert _value(text, 'reactor_waiting{job_name="mail"}') == 0
    assert _value(text, 'reactor_run_duration_seconds_count{job_name="mail"}') == 3
    assert _value(text, 'reactor_run_duration_seconds_sum{job_name="mail"}') == pytest.approx(0.8)
    assert _value(text, 'reactor_queue_wait_seconds_count{job_name="mail"}') == 2
    assert _value(text, 'reactor_feedback_lag_seconds_bucket{job_name="mail",le="0.005"}') == 1
    assert _value(text, 'reactor_jobs_received_total{job_name="sms"}') == 1
    with pytest.raises(ValueError, match="unknown outcome 'done'"):
        m.job_finished("mail", "done", 1.0)  # type: ignore[arg-type]


def test_links_and_storage() -> None:
    m = Metrics()
    m.reconnected()
    m.frame_rejected()
    m.frame_rejected()
    m.storage_down()
    text = m.exposition().decode()
    assert _value(text, "reactor_reconnects_total") == 1
    assert _value(text, "reactor_rejected_frames_total") == 2
    assert _value(text, "reactor_storage_unavailable") == 1
    m.storage_written(0.002)
    text = m.exposition().decode()
    assert _value(text, "reactor_storage_unavailable") == 0
    assert _value(text, 'reactor_storage_write_seconds_bucket{le="0.0025"}') == 1


def test_registries_are_private() -> None:
    a, b = Metrics(), Metrics()  # two nodes in one process never clash
    a.job_received("x")
    assert 'reactor_jobs_received_total{job_name="x"}' not in b.exposition().decode()


def test_every_name_is_prefixed() -> None:
    m = Metrics()
    m.job_received("x")
    for line in m.exposition().decode().splitlines():
        if line.startswith("# HELP") or line.startswith("# TYPE"):
            assert line.split()[2].startswith("reactor_"), line


def test_serve_over_http() -> None:
    m = Metrics()
    for _ in range(100):
        m.job_received("mail")
        m.job_started("mail", queue_wait=0.001)
        m.job_finished("mail", "succeeded", 0.01)
    server = m.serve(0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode()
    finally:
        server.close()
    assert _value(text, 'reactor_jobs_succeeded_total{job_name="mail"}') == 100
    assert _value(text, 'reactor_run_duration_seconds_count{job_name="mail"}') == 100
    assert "python_gc" not in text  # only reactor's own collectors: a private registry


def test_histograms_fold_in_batches_and_read_the_same() -> None:
    from reactor.ops.tally import FOLD_AT, Hist

    h = Hist((0.1, 1.0))
    values = [0.05, 0.5, 5.0] * (FOLD_AT // 2)  # folds once, leaves some pending
    for v in values:
        h.add(v)
    assert h.pending and len(h.pending) < FOLD_AT  # part folded, part pending
    cumulative, count, total = h.read()
    third = len(values) // 3
    assert cumulative == [third, 2 * third, 3 * third] and count == len(values)
    assert total == pytest.approx(sum(values))
    h.fold()
    assert h.read()[0] == cumulative and not h.pending


def test_job_names_past_the_cap_share_one_series() -> None:
    from reactor.ops.metrics import MAX_JOB_NAMES

    m = Metrics()
    for i in range(MAX_JOB_NAMES + 50):
        m.job_received(f"job{i}", waiting=0)
    text = m.exposition().decode()
    assert _value(text, 'reactor_jobs_received_total{job_name="_other"}') == 50
    assert text.count("reactor_jobs_received_total{") == MAX_JOB_NAMES + 1
