"""The ``reactor`` command's exit codes: one table, used by every subcommand (and documented in
docs/reference/exit-codes.md).

=====  ==========  ===============================================================================
code   name        meaning
=====  ==========  ===============================================================================
0      OK          done; a node or dashboard stopped by a signal stopped cleanly
1      FAILURE     the command was well formed and ran, but failed: a node stopped on an error,
                   its name is taken by a live node (``NodeNameTaken``), a job or node the
                   monitor was asked about does not exist, an action was refused
2      USAGE       nothing ran, because what the command was given is wrong or unusable: an
                   option, an environment variable, a config key, the job directory or a job
                   file, a Redis URL or its credentials, a port that is busy, an unreachable Redis
=====  ==========  ===============================================================================
"""

from __future__ import annotations

from typing import Final

from reactor.errors import NodeNameTaken

__all__ = ["FAILURE", "OK", "USAGE", "for_error"]

OK: Final = 0
FAILURE: Final = 1
USAGE: Final = 2

#: Errors a well-formed command meets at run time: exit FAILURE, not USAGE.
RUNTIME_ERRORS: Final = (NodeNameTaken,)


def for_error(exc: BaseException) -> int:
    """The exit code of a command that could not start because of ``exc``."""
    return FAILURE if isinstance(exc, RUNTIME_ERRORS) else USAGE
