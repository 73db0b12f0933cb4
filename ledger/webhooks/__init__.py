"""Webhooks: tenants' endpoints, one delivery per event and endpoint, signing, safe targets.

The outbox (`ledger.events`) writes the deliveries in the commit that finishes each
transaction; dispatchers claim due deliveries with a lease and record every attempt.
"""
