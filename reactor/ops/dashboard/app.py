"""The dashboard's web application: aiohttp routes, Jinja2 pages, basic auth and read-only mode.

Every page is plain HTML. A region marked ``data-live="/live/..."`` is refreshed every few
seconds by ``static/live.js`` (a small checked-in script, htmx-style: it swaps in the HTML the
partial route returns), so the view stays live without reloading. Retry, cancel and destroy are
HTML forms POSTed after a confirmation, refused in read-only mode and from other origins.
"""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from aiohttp import BasicAuth, web
from jinja2 import Environment, PackageLoader, select_autoescape

from reactor.jobs.limits import describe_limits
from reactor.jobs.record import STATUSES
from reactor.wire.messages import MAX_TAG_LEN, MAX_TAGS

from .chart import rate_chart
from .source import Source

log = logging.getLogger("reactor.dashboard")

STATIC: Final = Path(__file__).parent / "static"
SOURCE: Final = web.AppKey("source", Source)
SETTINGS: Final = web.AppKey("settings", dict[str, Any])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds only the local machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_app(
    source: Source, *, read_only: bool = False, password: str | None = None
) -> web.Application:
    """The aiohttp application serving ``source``.

    Args:
        source: where the data comes from (started and closed with the application).
        read_only: hide retry and destroy, and refuse their requests.
        password: require HTTP basic auth with this password (any user name).
    """
    app = web.Application(middlewares=[_guard])
    app[SOURCE] = source
    app[SETTINGS] = {"read_only": read_only, "password": password, "jinja": _jinja()}
    app.router.add_get("/", overview)
    app.router.add_get("/live/overview", overview)
    app.router.add_get("/nodes/{node}", node_jobs)
    app.router.add_get("/live/nodes/{node}", node_jobs)
    app.router.add_get("/jobs/{job_id}", job)
    app.router.add_get("/live/jobs/{job_id}", job)
    app.router.add_get("/flows/{flow_id}", flow)
    app.router.add_get("/live/flows/{flow_id}", flow)
    app.router.add_get("/failures", failures)
    app.router.add_get("/live/failures", failures)
    app.router.add_post("/jobs/{job_id}/retry", act)
    app.router.add_post("/jobs/{job_id}/destroy", act)
    app.router.add_post("/jobs/{job_id}/cancel", act)
    app.router.add_static("/static", STATIC)

    async def lifecycle(app: web.Application) -> Any:
        await source.start()
        yield
        await source.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def _jinja() -> Environment:
    env = Environment(
        loader=PackageLoader("reactor.ops.dashboard", "templates"),
        autoescape=select_autoescape(default=True),
    )
    env.filters["when"] = _when
    env.filters["ago"] = _ago
    return env


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else f"{seconds / 60:.0f} min"


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Basic auth when a password is set; same-origin POSTs only; a strict content policy."""
    password = request.app[SETTINGS]["password"]
    if password is not None and not request.path.startswith("/static/"):
        given = ""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                given = BasicAuth.decode(header).password
            except ValueError:
                given = ""
        if not hmac.compare_digest(given.encode(), password.encode()):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="reactor"'})
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="cross-origin request refused")
    response = await handler(request)
    response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _render(request: web.Request, page: str, **context: Any) -> web.Response:
    """The full page, or only its live part when the path starts with ``/live/``."""
    settings = request.app[SETTINGS]
    live = request.path.startswith("/live/")
    template = settings["jinja"].get_template(f"{page}.html")
    html = template.render(
        live=live,
        read_only=settings["read_only"],
        path=request.path_qs.removeprefix("/live"),
        live_url=_live_url(request),
        **context,
    )
    return web.Response(text=html, content_type="text/html")


def _live_url(request: web.Request) -> str:
    """The partial route that refreshes this page's live region."""
    if request.path.startswith("/live/"):
        return request.path_qs
    if request.path == "/":
        return "/live/overview"
    return "/live" + request.path_qs


async def overview(request: web.Request) -> web.Response:
    data = await request.app[SOURCE].overview()
    return _render(
        request,
        "overview",
        o=data,
        chart=rate_chart(data.rates),
        now=time.time(),
        statuses=STATUSES,
    )


async def node_jobs(request: web.Request) -> web.Response:
    node = request.match_info["node"]
    status = request.query.get("status", "")
    name = request.query.get("name", "")
    tags = [t for t in request.query.getall("tag", []) if t]  # ?tag=a&tag=b: both must match
    try:
        cursor = int(request.query.get("cursor", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="cursor must be a number") from None
    if status and status not in STATUSES:
        raise web.HTTPBadRequest(text=f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
    if len(tags) > MAX_TAGS or any(len(t) > MAX_TAG_LEN for t in tags):
        raise web.HTTPBadRequest(text=f"at most {MAX_TAGS} tags of {MAX_TAG_LEN} characters")
    records, next_cursor = await request.app[SOURCE].jobs_page(
        node, status=status, name=name, cursor=cursor, tags=tags
    )
    query = [("status", status), ("name", name), *(("tag", t) for t in tags)]
    more = f"/nodes/{node}?" + urlencode([*query, ("cursor", next_cursor)]) if next_cursor else ""
    return _render(
        request,
        "node",
        node=node,
        records=records,
        status=status,
        name=name,
        tags=tags,
        more=more,
        statuses=STATUSES,
    )


async def job(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    source = request.app[SOURCE]
    record = await source.job(job_id)
    progress = await source.progress(record) if record is not None else None
    error = (record or {}).get("last_error") or ""
    summary, _, trace = error.partition("\n")
    return _render(
        request,
        "job",
        job_id=job_id,
        r=record,
        summary=summary,
        trace=trace,
        progress=progress,
        limits=describe_limits((record or {}).get("limits")),
        now=time.time(),
    )


async def flow(request: web.Request) -> web.Response:
    flow_id = request.match_info["flow_id"]
    described = await request.app[SOURCE].flow(flow_id)
    return _render(request, "flow", flow_id=flow_id, f=described)


async def failures(request: web.Request) -> web.Response:
    failed, quarantined = await request.app[SOURCE].failures()
    return _render(request, "failures", failed=failed, quarantined=quarantined)


async def act(request: web.Request) -> web.StreamResponse:
    if request.app[SETTINGS]["read_only"]:
        raise web.HTTPForbidden(text="the dashboard is read-only")
    job_id = request.match_info["job_id"]
    form = await request.post()
    source = request.app[SOURCE]
    if request.path.endswith("/retry"):
        done = await source.retry(job_id)
        log.info("dashboard: retry of job %s: %s", job_id, "queued" if done else "refused")
    elif request.path.endswith("/cancel"):
        done = await source.cancel(job_id)
        log.info("dashboard: cancel of job %s: %s", job_id, "done" if done else "refused")
    else:
        done = await source.destroy(job_id)
        log.info("dashboard: destroy of job %s: %s", job_id, "done" if done else "not found")
    back = str(form.get("next") or f"/jobs/{job_id}")
    if not back.startswith("/") or back.startswith("//"):
        back = "/"
    raise web.HTTPSeeOther(back)
