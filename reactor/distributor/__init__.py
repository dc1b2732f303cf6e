"""The application side: the Distributor driver and its features (handles, drain, outbox)."""
