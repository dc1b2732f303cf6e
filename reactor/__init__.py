"""reactor: distributed background jobs over ZeroMQ, msgpack and asyncio.

``import reactor as JR`` gives JobReactor's facade (``JR.start_distributor``, ``JR.enqueue``,
``JR.start_node``, ``JR.config``, ...); ``Distributor`` and ``Node`` are the same machinery as
asyncio objects.
"""

from __future__ import annotations

import functools

from reactor._version import __version__
from reactor.app.cancel import cancel as _cancel
from reactor.app.runtime import Runtime
from reactor.config import BadEnvironmentConfig, Config
from reactor.distributor.driver import Distributor
from reactor.distributor.flows import FlowHandle
from reactor.distributor.handle import JobHandle
from reactor.errors import (
    BackPressureError,
    CancelJob,
    ConfigError,
    FlowError,
    JobCancelledError,
    JobFailed,
    JobLost,
    JobTimeoutError,
    MessageTooLargeError,
    NodeNameTaken,
    NoSuchJob,
    OutsideJobError,
    PoisonedRecordsError,
    ProgressError,
    ProtocolError,
    ReactorError,
    RemoteError,
    StorageAuthError,
    StorageUnavailableError,
    TimeLimitExceeded,
)
from reactor.jobs.backoff import Backoff
from reactor.jobs.context import JobContext, current_job
from reactor.jobs.flow import chain, chord, group, step
from reactor.jobs.registry import JobRegistry, job, job_callback, job_errback
from reactor.node.driver import Node

__all__ = [
    "__version__",
    # errors
    "BackPressureError",
    "CancelJob",
    "ConfigError",
    "FlowError",
    # objects
    "Backoff",
    "Config",
    "Distributor",
    "FlowHandle",
    "JobCancelledError",
    "JobFailed",
    "JobContext",
    "JobHandle",
    "JobLost",
    "JobRegistry",
    "JobTimeoutError",
    "MessageTooLargeError",
    "NodeNameTaken",
    "NoSuchJob",
    "Node",
    "OutsideJobError",
    "PoisonedRecordsError",
    "ProgressError",
    "ProtocolError",
    "ReactorError",
    "RemoteError",
    "StorageAuthError",
    "StorageUnavailableError",
    "TimeLimitExceeded",
    # facade
    "cancel",
    "config",
    "drain",
    "enqueue",
    "enqueue_flow",
    # job definitions
    "current_job",
    "job",
    "job_callback",
    "job_errback",
    "ready",
    "result",
    "run",
    "run_forever",
    "snapshot",
    "start_distributor",
    "start_node",
    "stop",
    # workflows
    "chain",
    "chord",
    "group",
    "step",
]

#: The facade's settings (the one documented global, with the runtime below). A bad
#: ``REACTOR_<KEY>`` variable fails the facade's first use, not the import (so that
#: ``reactor --help`` works).
config: Config
try:
    config = Config()
except ConfigError as exc:
    config = BadEnvironmentConfig(exc)
_runtime = Runtime.facade = Runtime(config)

run = _runtime.run
run_forever = _runtime.run_forever
ready = _runtime.ready
stop = _runtime.stop
drain = _runtime.drain
start_distributor = _runtime.start_distributor
start_node = _runtime.start_node
enqueue = _runtime.enqueue
enqueue_flow = _runtime.enqueue_flow
snapshot = _runtime.snapshot
result = _runtime.result
cancel = functools.partial(_cancel, _runtime)
