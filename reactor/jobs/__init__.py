"""Jobs as data and code: @job registry, loader, chains, records, backoff, cron, enqueue options."""
