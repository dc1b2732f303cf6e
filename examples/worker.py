"""The node side: a worker named worker_1 that takes jobs from the distributor on port 5000.

Same as `reactor node --name worker_1 --distributor 127.0.0.1:5000 --jobs reactor_jobs`.
"""

import reactor as JR

JR.config["job_directory"] = "reactor_jobs"  # the default, shown for clarity
JR.run_forever(
    lambda: JR.start_node(
        name="worker_1", storage="memory_storage", distributors=[("127.0.0.1", 5000)]
    )
)
