"""Operations: metrics, logs, the Redis monitor and the web dashboard."""
