"""Test package. Settings every test process shares are made here, before reactor is imported."""

import os

# A distributor stopping with jobs no node stored waits drain_timeout (10 s) before it gives up on
# them; tests stop such distributors all the time, so they wait less unless they set it themselves.
# An environment variable, set before reactor is imported, so JR.config, the Config objects the
# tests make and the processes they start all see it.
os.environ.setdefault("REACTOR_DRAIN_TIMEOUT", "0.5")
