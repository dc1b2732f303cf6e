"""The exceptions reactor raises, and the two control signals job code uses.

Tree::

    ReactorError
    ├── ConfigError (also KeyError / ValueError)       bad or unknown configuration
    ├── ProtocolError (also ValueError)                a malformed or unexpected message
    ├── MessageTooLargeError (also ValueError)         a job or message over the size limit
    ├── BackPressureError                              the distributor's waiting buffer is full
    ├── StorageUnavailableError (also ConnectionError) the job storage cannot be reached
    ├── StorageAuthError                               the job storage refused our credentials
    ├── PoisonedRecordsError                           storage could not write some jobs' records
    ├── JobFailed                                      a job ended in error (``handle.result()``)
    ├── JobCancelledError                              a job was cancelled by ``handle.cancel()``
    ├── JobTimeoutError (also TimeoutError)            ``handle.result(timeout)`` ran out
    ├── NoSuchJob                                      a node does not know the job's name
    ├── NodeNameTaken                                  a live node already has this node's name
    ├── MetricsPortError (also OSError)                the metrics server cannot bind its port
    ├── JobLost                                        a job's record vanished without a destroy
    ├── TimeLimitExceeded (also TimeoutError)          an attempt ran past its timeout
    ├── OutsideJobError (also LookupError)             ``current_job()`` called outside a job
    ├── ProgressError (also ValueError)                ``progress()`` given a bad fraction or note
    ├── FlowError (also ValueError)                    a workflow built wrong (an empty group, ...)
    └── RemoteError                                    a node's exception, seen by the distributor

    CancelJob (BaseException)                          raised by job code to end a job on purpose
"""

from __future__ import annotations

from typing import Any


class ReactorError(Exception):
    """Base of every error reactor raises itself."""


class ConfigError(ReactorError, KeyError, ValueError):
    """An unknown configuration key or an invalid value; the message names the valid choices."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ProtocolError(ReactorError, ValueError):
    """A message that could not be decoded or failed the envelope schema."""


class MessageTooLargeError(ReactorError, ValueError):
    """A job's arguments or a message exceed the configured size limit."""


class BackPressureError(ReactorError):
    """The distributor already holds as many waiting jobs as it is allowed to."""


class StorageUnavailableError(ReactorError, ConnectionError):
    """The node's job storage cannot be reached; the node stops acknowledging jobs until it can."""


class StorageAuthError(ReactorError):
    """The job storage refused the node's credentials (wrong password, NOAUTH, an ACL user
    without the permissions it needs). Raised at once by ``start()``: retrying cannot help.
    """


class PoisonedRecordsError(ReactorError):
    """Storage wrote a batch of new jobs except these, whose keys hold data it cannot write over.

    ``Storage.add()`` raises it after the other jobs of the call are stored (and may be
    acknowledged); the jobs named here are not stored and must be refused.

    Attributes:
        failed: job id -> why its record could not be written.
    """

    def __init__(self, failed: dict[str, str]) -> None:
        shown = ", ".join(f"{job_id} ({why})" for job_id, why in list(failed.items())[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        super().__init__(f"could not store {len(failed)} job(s): {shown}{more}")
        self.failed = failed


class NoSuchJob(ReactorError):
    """A node was asked to run a job name that no file in its job directory defines."""


class NodeNameTaken(ReactorError):
    """A node started under the name of a live node; the message says which host holds it."""


class MetricsPortError(ReactorError, OSError):
    """The Prometheus metrics server cannot listen on its address (``metrics_port=``, the CLI's
    ``--metrics-port``): the port is busy or the host is not this machine's.

    Attributes:
        host: the address it tried to bind.
        port: the port it tried to bind.
    """

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot serve metrics on {host}:{port} (metrics_port={port}): {reason}")
        self.host = host
        self.port = port

    def __str__(self) -> str:  # OSError would format its args
        return str(self.args[0])


class JobLost(ReactorError):
    """A job's record vanished without a destroy (eviction, FLUSHDB), or its only holders died."""


class TimeLimitExceeded(ReactorError, TimeoutError):
    """An attempt ran past its ``timeout``; it fails and follows the job's retry policy."""


class FlowError(ReactorError, ValueError):
    """A workflow built wrong: an empty chain or group, something not a step where a step
    belongs, or an enqueue option a step cannot take (``step(..., period=...)``)."""


class RemoteError(ReactorError):
    """An exception raised by job code on a node, carried back to the distributor.

    ``str()`` reads like the original (``"NameError: name 'x' is not defined"``); the original
    type's name, message and formatted traceback stay available as attributes.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(type_name, message, traceback)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name

    def __repr__(self) -> str:
        return f"RemoteError({self.type_name!r}, {self.message!r})"


class JobFailed(ReactorError):
    """Raised by ``handle.result()`` when the job ended in error after its last attempt."""

    def __init__(self, job_id: str, error: RemoteError, args: dict[str, Any]) -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error
        self.args_dict = args
        self.type_name = error.type_name
        self.message = error.message
        self.traceback = error.traceback


class JobCancelledError(ReactorError):
    """Raised by ``handle.result()`` for a job stopped by ``handle.cancel()``."""


class JobTimeoutError(ReactorError, TimeoutError):
    """``handle.result(timeout)`` waited longer than its timeout; the job itself goes on."""


class OutsideJobError(ReactorError, LookupError):
    """``current_job()`` was called where no attempt of a job runs (not in a job's body,
    callback or errback, nor in a thread or task the attempt did not start)."""


class ProgressError(ReactorError, ValueError):
    """``current_job().progress()`` got a fraction that is not a number in [0, 1], or a note
    that is not a string."""


class CancelJob(BaseException):
    """Raise inside a job, callback or errback to end the job (and stop a periodic one).

    A ``BaseException`` so that a plain ``except Exception`` in job code does not swallow it.
    """
