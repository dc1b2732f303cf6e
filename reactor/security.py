"""CURVE authentication and encryption for reactor sockets (not built yet)."""

from __future__ import annotations

from typing import Any


class CurveClient:
    """A node's CURVE settings (placeholder)."""

    @classmethod
    def from_files(cls, secret: str, server_key: str) -> Any:
        """Not available yet."""
        raise NotImplementedError("CURVE is not available in this version")
