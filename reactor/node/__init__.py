"""The worker side: the Node driver and its helpers (watchdog, write-ahead, discovery follower)."""
