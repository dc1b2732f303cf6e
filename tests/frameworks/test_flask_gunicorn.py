"""examples/flask_app under ``gunicorn -w 4``: 1,000 requests, each one's job run and answered,
while gunicorn recycles workers (``--max-requests``); then a graceful stop drains the rest.
With ``--preload`` the distributor started in the master is restarted in each worker."""

from __future__ import annotations

import pytest

from .conftest import BIN, EXAMPLES, Processes, load_then_stop

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("preload", [False, True], ids=["import-in-worker", "preload"])
def test_flask_under_gunicorn_loses_no_job_while_workers_recycle(
    processes: Processes, preload: bool
) -> None:
    def gunicorn(port: int) -> list[str]:
        cmd = [str(BIN / "gunicorn"), "-w", "4", "-b", f"127.0.0.1:{port}"]
        cmd += ["--max-requests", "150", "--max-requests-jitter", "50", "--graceful-timeout", "30"]
        cmd += ["--no-control-socket"]  # gunicorn 27 shares one control socket path otherwise
        return [*cmd, *(["--preload"] if preload else []), "app:app"]

    label = f"flask/gunicorn -w 4{' --preload' if preload else ''}"
    answers = load_then_stop(processes, label, EXAMPLES / "flask_app", gunicorn)
    workers = {a["worker"] for a in answers}
    assert len(workers) > 4, f"no worker was recycled ({len(workers)} served)"
