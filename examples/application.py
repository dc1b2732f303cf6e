"""The application side of a one distributor + one node setup: enqueues a job every second.

Run `python examples/application.py` in one terminal and `python examples/worker.py` in another
(from the repository root); start them in either order.
"""

import time

import reactor as JR

JR.run(lambda: JR.start_distributor("127.0.0.1", 5000))  # returns once the distributor is bound

for i in range(10):
    JR.enqueue(
        "hello",
        {"name": f"visitor {i}"},
        on_success=lambda args: print("feedback:", args["greeting"]),
    )
    time.sleep(1)
JR.stop()  # waits until a node has stored every job (drain_timeout), then stops
