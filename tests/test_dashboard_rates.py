"""The dashboard's jobs-per-second series from distributors' finished counters (no I/O)."""

from __future__ import annotations

import pytest

from reactor.ops.dashboard.chart import rate_chart
from reactor.ops.dashboard.rates import Rates


def test_rates_add_up_across_distributors_and_spread_between_readings() -> None:
    rates = Rates(window=60.0, bucket=10.0)
    for t, finished in ((1000.0, 0), (1010.0, 100), (1020.0, 100)):
        rates.add("a", t, finished)
    rates.add("b", 1000.0, 5)
    rates.add("b", 1020.0, 405)  # 400 over 20 s: 200 in each of the two buckets
    rates.add("b", 1020.0, 999)  # a repeated reading is ignored
    series = dict(rates.series(now=1030.0))
    assert series[1000.0] == pytest.approx((100 + 200) / 10)
    assert series[1010.0] == pytest.approx(200 / 10)
    assert series[1020.0] == 0.0  # after the last readings: nothing known to have finished
    assert len(series) == 6


def test_a_restarted_counter_starts_over_and_old_sessions_go() -> None:
    rates = Rates(window=60.0, bucket=10.0)
    rates.add("a", 1000.0, 500)
    rates.add("a", 1005.0, 3)  # restarted
    rates.add("a", 1010.0, 13)
    assert dict(rates.series(now=1060.0))[1000.0] == pytest.approx(1.0)
    rates.forget_older_than(1011.0)
    assert all(rate == 0 for _start, rate in rates.series(now=1060.0))


def test_chart_is_svg_with_a_labelled_peak() -> None:
    html = rate_chart([(0.0, 1.0), (10.0, 4.0)], width=100, height=50)
    assert "<svg" in html and "</svg>" in html and html.count("<rect") == 2
    assert "peak 4.0 jobs/s · latest 4.0 jobs/s" in html
