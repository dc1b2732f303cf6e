"""The sans-I/O delivery core: the distributor's and the node's protocol logic as plain objects.

Nothing here touches a socket, a clock or an event loop. Each core is fed events (messages from a
peer with the time they arrived, timer ticks, enqueues, finished attempts, storage results) and
emits actions through a small port object its driver implements (messages to send, records to
write, jobs to start, outcomes to deliver). the distributor and node drivers are the
asyncio/ZeroMQ/Redis drivers; ``tests/sim`` drives the same objects on a simulated network.
"""
