"""The `tally` command: composes the ledger, the intake API and the workers."""
