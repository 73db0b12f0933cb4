"""`tally bench --pattern chaos`: sustained load while Tally's processes, its database, its
broker and the merchant's webhook receiver fail, then proof that nothing accepted was lost
or applied twice (docs/operations.md#the-chaos-run).

The run owns what it breaks: a PostgreSQL of its own (pgserver, restarted with a fast
shutdown) and, on Redis, a `redis-server` of its own (append-only, restarted with
SHUTDOWN); on RabbitMQ it restarts the given broker's application (`rabbitmqctl stop_app`,
`start_app`), so it needs a RabbitMQ it may restart. Clients behave as a merchant's should:
a submission that gets no answer, a 503 or a 429 is sent again, same body, same
reference_id, until it is accepted.

What it checks at the end, each a violation if it fails (and the exit code is then 1):
every accepted submission has exactly one transaction with a final outcome and none is
`failed`; no transaction wrote its journal twice; the ledger's invariants hold; every
applied or rejected transaction's event reached the receiver with a valid signature;
nothing was ever answered 500 or left hanging past the client's timeout; while the
database was down the API answered 503 with Retry-After, and served again within 5 s of
the database coming back.

Modules: `run` (the orchestration: backends, stack, load, faults, verdict), `backends`
(the PostgreSQL, Redis and RabbitMQ it restarts), `traffic` (the merchants' submissions),
`faults` (the schedule and its injection), `verdict` (the checks and the printed report).
The webhook receiver is `tally.webhook_receiver`, the HTTP client `tally.load_client`.
The package itself imports nothing.
"""
