"""A tiny web application (standard library only) that enqueues a job per request.

Run `python examples/web_app.py` and a worker (`python examples/worker.py`), then
`curl 'http://127.0.0.1:8080/?name=you'`: the handler waits up to 5 s for the job's result.
"""

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import reactor as JR


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        name = parse_qs(urlparse(self.path).query).get("name", ["world"])[0]
        handle = JR.enqueue("hello", {"name": name})  # thread-safe, returns at once
        try:
            body = handle.result(timeout=5)["greeting"].encode()
            self.send_response(200)
        except JR.ReactorError as exc:
            body = f"job failed: {exc}".encode()
            self.send_response(502)
        self.end_headers()
        self.wfile.write(body + b"\n")


if __name__ == "__main__":
    JR.run()
    JR.start_distributor("127.0.0.1", 5000)
    print("listening on http://127.0.0.1:8080; start a worker with python examples/worker.py")
    ThreadingHTTPServer(("127.0.0.1", 8080), Handler).serve_forever()
