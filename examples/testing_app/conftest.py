"""The reactor fixtures (reactor_capture, reactor_eager, reactor_cluster) come from reactor's
pytest plugin; this file only says where the shop's jobs are."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def reactor_jobs() -> Path:
    return Path(__file__).parent / "shop_jobs"
