"""A distributor and a node in one process, as JobReactor's all-in-one example.

Run from the repository root:  python examples/all_in_one.py
"""

import reactor as JR
from reactor.testing.support import free_port

port = free_port()
JR.config["log_job_processing"] = False
JR.run()  # the reactor loop, on a daemon thread
JR.start_distributor("127.0.0.1", port)
JR.start_node(name="all_in_one", distributors=[("127.0.0.1", port)], job_directory="reactor_jobs")

handle = JR.enqueue("hello", {"name": "all in one"}, on_success=lambda a: print("feedback:", a))
print("result:", handle.result(timeout=10))
JR.stop()
