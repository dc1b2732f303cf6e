"""``reactor.monitor``: the public import path of the Redis monitor (it lives in reactor.ops)."""

from __future__ import annotations

from reactor.ops.monitor import RETRYABLE, RedisMonitor, retry_key

__all__ = ["RETRYABLE", "RedisMonitor", "retry_key"]
