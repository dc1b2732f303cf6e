"""examples/fastapi_app under ``uvicorn --workers 2``: 1,000 requests whose handlers await their
job handles, then a graceful stop (SIGTERM) right after fire-and-forget requests.

Worker recycling is tested under gunicorn (test_flask_gunicorn): uvicorn's
``--limit-max-requests`` resets the connections a retiring worker accepted but had not served,
so clients see errors that have nothing to do with jobs."""

from __future__ import annotations

import pytest

from .conftest import BIN, EXAMPLES, Processes, load_then_stop

pytestmark = pytest.mark.redis


def test_fastapi_under_uvicorn_workers_loses_no_job(processes: Processes) -> None:
    def uvicorn(port: int) -> list[str]:
        return [str(BIN / "uvicorn"), "app:app", "--workers", "2", "--port", str(port)]

    answers = load_then_stop(
        processes, "fastapi/uvicorn --workers 2", EXAMPLES / "fastapi_app", uvicorn
    )
    assert len({a["worker"] for a in answers}) == 2  # both workers served, each its distributor
