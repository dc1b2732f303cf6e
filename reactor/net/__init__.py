"""The network: the only modules that import ZeroMQ (sockets, a node's link, CURVE security)."""
