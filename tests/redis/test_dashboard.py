"""Issue 12: the dashboard in a real browser (Debian's headless chromium driven by selenium),
against a real redis-server, a real node process and an announcing distributor."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reactor import Config, Distributor, JobFailed
from reactor.ops.monitor import RedisMonitor
from reactor.testing import NodeProcess, free_port, wait_until

from ..conftest import FAST, JOBS

pytestmark = pytest.mark.redis

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: The docs' screenshot (docs/index.md, docs/guides/operations.md); the test refreshes it only when
#: asked (REACTOR_UPDATE_SCREENSHOT=1), so a test run leaves the checkout as it found it.
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
T = TypeVar("T")


def require_chromium() -> None:
    """Skip without chromium and its driver, but fail under ``CI=true``: CI must run these."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if not missing:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{', '.join(missing)} missing, and CI=true requires the browser tests")
    pytest.skip(f"{', '.join(missing)} missing (apt-get install chromium chromium-driver)")


class LoopThread:
    """An event loop in a thread, so the synchronous browser calls never block the distributor."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, factory: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        async def run() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _text(driver: Any, css: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _confirm_click(driver: Any, css: str) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element("css selector", css).click()
    WebDriverWait(driver, 10).until(expected_conditions.alert_is_present())
    driver.switch_to.alert.accept()


def test_dashboard_in_a_browser(browser: Any, redis_url: str, tmp_path: Path) -> None:
    loop = LoopThread()
    d = Distributor("127.0.0.1", 0, config=Config(**FAST), announce=redis_url, group="web")
    loop.call(d.start)
    settings = {**FAST, "max_attempt": 1, "remove_done_jobs": False}
    node = NodeProcess("web-1", [d.address], jobs=JOBS, storage=redis_url, settings=settings,
                       log_path=tmp_path / "node.log")  # fmt: skip
    dashboard, base = start_dashboard(redis_url)
    try:
        wait_until(lambda: d.node_alive("web-1"), 20, message="the node did not connect")
        path, gate = tmp_path / "attempts.txt", tmp_path / "gate"
        args = {"path": str(path), "gate": str(gate)}

        async def enqueue() -> tuple[str, str]:
            handles = [d.enqueue("gated", args) for _ in range(2)]
            for handle in handles:
                with contextlib.suppress(JobFailed):
                    await asyncio.wait_for(handle, 10)
            return handles[0].id, handles[1].id

        retried, destroyed = loop.call(enqueue)
        monitor = RedisMonitor(redis_url)
        wait_until(lambda: (monitor.load(destroyed) or {}).get("status") == "failed", 10)

        # the overview lists the distributor and the node, live
        started = time.monotonic()
        browser.get(base + "/")
        print(f"overview loaded in {time.monotonic() - started:.3f}s")
        wait_until(lambda: "web-1" in _text(browser, "#nodes"), 15, 0.1)
        assert d.address in _text(browser, "#distributors")
        assert "yes" in _text(browser, "#nodes")  # alive
        wait_until(lambda: "web-1" in _text(browser, "#counts"), 15, 0.1)

        async def burst() -> None:  # after the page's first reading: the chart shows a rate
            await asyncio.gather(*(d.enqueue("record", {}) for _ in range(50)))

        loop.call(burst)
        wait_until(lambda: _peak(browser) >= 4.0, 30, 0.2)  # 50 jobs in a 10 s bucket
        wait_until(lambda: "50" in _text(browser, "#counts"), 30, 0.2)  # 50 complete
        shot = SCREENSHOT if os.environ.get("REACTOR_UPDATE_SCREENSHOT") else tmp_path / "o.png"
        shot.parent.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(shot)), "chromium saved no screenshot"
        assert shot.stat().st_size > 10_000  # a rendered page, not an empty image

        # a failed job shows its traceback
        browser.get(f"{base}/jobs/{retried}")
        trace = _text(browser, "#traceback")
        assert "Traceback (most recent call last)" in trace
        assert "RuntimeError: gate" in trace and "in gated" in trace
        assert _text(browser, "#status") == "failed"

        # a node's jobs, filtered by status and name (SSCAN paging, as the monitor does)
        browser.get(f"{base}/nodes/web-1?status=failed&name=gated")
        listed = _text(browser, "#jobs")
        assert retried in listed and destroyed in listed and "record" not in listed
        browser.get(f"{base}/nodes/web-1?status=complete")
        assert "record" in _text(browser, "#jobs") and "gated" not in _text(browser, "#jobs")
        browser.get(f"{base}/jobs/{retried}")

        # retry re-runs it, and the page shows it complete without a reload
        gate.touch()
        _confirm_click(browser, "button.retry")
        wait_until(lambda: _text(browser, "#status") == "complete", 20, 0.1)
        assert browser.current_url.endswith(f"/jobs/{retried}")
        assert len(path.read_text().splitlines()) == 3  # two failures, one retried success

        # a destroyed job disappears
        browser.get(f"{base}/failures")
        assert destroyed in _text(browser, "#failed")
        assert retried not in _text(browser, "#failed")  # complete now
        _confirm_click(browser, f"#failed-{destroyed} button.destroy")
        wait_until(lambda: browser.current_url.endswith("/failures"), 10, 0.1)
        wait_until(lambda: destroyed not in _text(browser, "#failed"), 10, 0.1)
        assert monitor.load(destroyed) is None
        monitor.close()
    finally:
        dashboard.terminate()
        out = dashboard.communicate(timeout=15)[0].decode(errors="replace")
        node.kill()
        loop.call(d.stop)
        loop.close()
    assert dashboard.returncode == 0, out


def _peak(driver: Any) -> float:
    words = _text(driver, "#rate").split()  # "peak 5.0 jobs/s · latest ..."
    return float(words[1]) if len(words) > 1 else 0.0


def start_dashboard(
    redis_url: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A ``reactor dashboard`` process on a free port, and its base URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reactor",
            "dashboard",
            "--redis",
            redis_url,
            "--port",
            str(port),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), 20, 0.1, "the dashboard did not start")
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate(timeout=15)[0].decode(errors="replace")) from None
    return proc, base


def _up(base: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(base + "/static/live.js", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_read_only_and_password(redis_url: str) -> None:
    import urllib.error
    import urllib.request

    env = {**os.environ, "REACTOR_PASSWORD": "s3cret"}
    proc, base = start_dashboard(redis_url, "--read-only", "--host", "0.0.0.0", env=env)
    try:
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(base + "/", timeout=5)
        assert denied.value.code == 401
        denied.value.close()

        auth = {"Authorization": "Basic " + base64.b64encode(b"anyone:s3cret").decode()}
        with urllib.request.urlopen(urllib.request.Request(base + "/", headers=auth)) as response:
            page = response.read().decode()
        assert "read-only" in page
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(
                urllib.request.Request(base + "/jobs/x/destroy", data=b"", headers=auth)
            )
        assert refused.value.code == 403
        refused.value.close()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0].decode(errors="replace")
    assert "without a password" not in out  # it has one
    assert proc.returncode == 0, out


def test_warns_when_bound_beyond_loopback_without_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from reactor.ops.dashboard import Dashboard

    Dashboard("redis://127.0.0.1:1/0", host="127.0.0.1")
    assert not caplog.records
    Dashboard("redis://127.0.0.1:1/0", host="0.0.0.0")
    assert "bound to 0.0.0.0 without a password" in caplog.records[-1].getMessage()
    assert caplog.records[-1].levelname == "WARNING"


@pytest.mark.slow
def test_pages_of_a_50k_job_node_load_fast(redis_url: str) -> None:
    """Issue 12: the dashboard's pages with 50,000 stored jobs (figures printed for the notes)."""
    import urllib.request

    from .conftest import store_many

    total, node = 50_000, "big"
    store_many(redis_url, node, total)
    proc, base = start_dashboard(redis_url)
    figures: dict[str, float] = {}
    try:
        for label, path in (
            ("overview, first (counts 50k statuses)", "/"),
            ("overview, later (counts cached)", "/"),
            ("node page, 20 rows", f"/nodes/{node}"),
            ("node page, 20 failed rows", f"/nodes/{node}?status=failed"),
            ("job page", "/jobs/job-000999"),
            ("failures (100 of 50 failed)", "/failures"),
        ):
            started = time.perf_counter()
            with urllib.request.urlopen(base + path, timeout=30) as response:
                page = response.read().decode()
            figures[label] = time.perf_counter() - started
            assert response.status == 200
            print(f"dashboard {label}: {figures[label] * 1000:.0f} ms ({len(page)} bytes)")
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert figures["overview, later (counts cached)"] < 1.0
    assert figures["node page, 20 rows"] < 1.0
    assert figures["job page"] < 1.0
