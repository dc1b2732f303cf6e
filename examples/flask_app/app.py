"""A Flask application that enqueues a job per request, served by gunicorn's worker processes.

From this directory, with a Redis at REDIS_URL (default redis://127.0.0.1:6379/0):

    gunicorn -w 4 -b 127.0.0.1:8000 app:app
    reactor node --name w1 --discover redis://127.0.0.1:6379/0     # as many as you like

Every worker process runs its own distributor on a free port (port 0) and announces it in Redis
(announce=); nodes started with --discover dial every announced distributor and follow workers as
gunicorn starts and recycles them. A worker that exits (SIGTERM, --max-requests) first waits until
a node has stored every job it enqueued (drain_timeout). With --preload the distributor started in
the master is started again in each worker on first use.
"""

import os

from flask import Flask, jsonify, request

import reactor as JR

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

JR.start_distributor("127.0.0.1", 0, announce=REDIS_URL, group="flask_app")

app = Flask(__name__)


@app.get("/greet")
def greet():
    """Enqueue a job and answer with its result (the worker waits; the node does the work)."""
    handle = JR.enqueue("greet", {"name": request.args.get("name", "world")})
    args = handle.result(timeout=30)
    return jsonify(greeting=args["greeting"], job=handle.id, worker=os.getpid())


@app.post("/later")
def later():
    """Enqueue a job and answer at once (fire and forget)."""
    handle = JR.enqueue("greet", {"name": request.args.get("name", "world")})
    return jsonify(job=handle.id, worker=os.getpid())
