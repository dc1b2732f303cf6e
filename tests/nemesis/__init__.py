"""A randomized nemesis (Jepsen-style) on real processes (issue 18).

A seeded schedule of faults (SIGKILL, SIGSTOP/SIGCONT, SIGTERM and restart of nodes and of
applications, connection cuts and partitions through a proxy, Redis restarts) played against a
redis-server, several application processes (distributors with ``group=``, ``outbox=`` and
``result_store=``) and several ``reactor node`` processes (memory and Redis storage), then a
checker of the ledgers they wrote. ``python -m tests.nemesis --minutes M --seed S`` runs it.

Modules: ``schedule`` (the faults), ``cluster`` (the processes), ``app`` (the application
process), ``ledger`` (what was accepted, heard and run), ``checker`` (the contract),
``runner`` (one run); ``jobs/`` is the nodes' job directory.
"""
