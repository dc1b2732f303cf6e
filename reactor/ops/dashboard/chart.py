"""An inline SVG bar chart of jobs per second: no JavaScript, no library, no build step."""

from __future__ import annotations

from html import escape


def rate_chart(series: list[tuple[float, float]], *, width: int = 600, height: int = 100) -> str:
    """HTML for ``(bucket start, rate)`` pairs, oldest first: the peak and the latest rate, an
    SVG of one bar per bucket (stretched to the page's width), and the time axis."""
    peak = max((rate for _start, rate in series), default=0.0)
    latest = series[-1][1] if series else 0.0
    top = peak if peak > 0 else 1.0
    bar = width / max(1, len(series))
    bars = []
    for i, (_start, rate) in enumerate(series):
        h = height * rate / top
        bars.append(
            f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}" '
            f'height="{h:.1f}"><title>{rate:.1f} jobs/s</title></rect>'
        )
    minutes = round(len(series) * (series[1][0] - series[0][0]) / 60) if len(series) > 1 else 0
    return (
        f'<p class="chart-label" id="rate">peak {peak:.1f} jobs/s · latest {latest:.1f} jobs/s</p>'
        f'<svg class="chart" role="img" aria-label="jobs per second" viewBox="0 0 {width} '
        f'{height}" width="100%" height="{height}" preserveAspectRatio="none">{"".join(bars)}'
        f'</svg><p class="axis"><span>{escape(f"-{minutes} min")}</span><span>now</span></p>'
    )
