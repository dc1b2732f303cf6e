"""examples/django_app (a minimal project whose AppConfig.ready starts the distributor, and whose
job imports the project's models) under ``gunicorn -w 2`` recycling workers: 1,000 requests."""

from __future__ import annotations

import pytest

from .conftest import BIN, EXAMPLES, Processes, load_then_stop

pytestmark = pytest.mark.redis


def test_django_under_gunicorn_loses_no_job_while_workers_recycle(processes: Processes) -> None:
    def gunicorn(port: int) -> list[str]:
        cmd = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}"]
        cmd += ["--max-requests", "300", "--max-requests-jitter", "50", "--no-control-socket"]
        return [*cmd, "mysite.wsgi"]

    answers = load_then_stop(processes, "django/gunicorn -w 2", EXAMPLES / "django_app", gunicorn)
    workers = {a["worker"] for a in answers}
    assert len(workers) > 2, f"no worker was recycled ({len(workers)} served)"
