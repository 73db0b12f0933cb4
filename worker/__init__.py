"""Celery workers and the relay: thin adapters that hand transaction ids to the ledger."""
