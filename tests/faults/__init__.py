"""Real-process fault tests for issue 9: processes, signals, a TCP proxy, network namespaces."""
