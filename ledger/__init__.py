"""The double-entry ledger: domain rules and all SQL. Knows nothing of HTTP or queues."""
