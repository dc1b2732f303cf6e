"""A FastAPI application that enqueues a job per request and awaits it, under uvicorn's workers.

From this directory, with a Redis at REDIS_URL (default redis://127.0.0.1:6379/0):

    uvicorn app:app --workers 2 --port 8000
    reactor node --name w1 --discover redis://127.0.0.1:6379/0     # as many as you like

Each worker process starts its own distributor in the lifespan, on a free port (port 0),
announced in Redis so nodes started with --discover find it. Handlers await job handles on
uvicorn's event loop; the distributor runs on reactor's own loop thread. At shutdown the lifespan
drains: the worker waits until a node has stored every job it enqueued (drain_timeout).
"""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import reactor as JR

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Binding and announcing block briefly: keep them off uvicorn's event loop.
    await asyncio.to_thread(
        JR.start_distributor, "127.0.0.1", 0, announce=REDIS_URL, group="fastapi_app"
    )
    yield
    await asyncio.to_thread(JR.stop)  # drains; returns how many jobs no node stored


app = FastAPI(lifespan=lifespan)


@app.get("/greet")
async def greet(name: str = "world") -> dict[str, object]:
    """Enqueue a job and await its result without blocking the event loop."""
    handle = JR.enqueue("greet", {"name": name})
    args = await asyncio.wait_for(handle, 30)
    return {"greeting": args["greeting"], "job": handle.id, "worker": os.getpid()}


@app.post("/later")
async def later(name: str = "world") -> dict[str, object]:
    """Enqueue a job and answer at once (fire and forget)."""
    handle = JR.enqueue("greet", {"name": name})
    return {"job": handle.id, "worker": os.getpid()}
