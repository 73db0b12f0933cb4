"""`tally bench`: the real stack driven over HTTP, next to the raw ledger write
(docs/performance.md#the-raw-sql-baseline).

One run creates a fresh database on a PostgreSQL server (given, or embedded), starts the
API under granian, a Celery worker and the relay on the chosen broker as subprocesses,
measures the latency of lone transactions (202 to applied, applied to webhook received),
funds wallets, then drives HTTP submissions from a pool of client processes: closed loop
(a fixed number of requests in flight) or open loop (`--rate`, requests offered on a
fixed schedule). Rates and apply latencies are read from the database (`created_at`,
`completed_at`); accept latencies are measured by the clients. The same ledger write, one
commit per transfer, then runs directly in SQL on the same database, and the ledger's
invariants are checked at the end: any violation, error or stranded transaction makes
the exit status non-zero.

Modules: `arguments` (the flags), `run` (the orchestration), `errors` (BenchError),
`phases` (the measured HTTP phases), `load` (the load-generator processes), `workloads`
(what they send, and `seed_tenant`, the one way a run makes a tenant), `latency` (lone
transactions and webhooks), `raw_sql` (the baseline), `monitor` (memory and CPU of the
stack's processes), `report` (percentiles and what is printed), `slow_clients` and
`pressure` (the slow-clients scenario), `ledger_time` (as-of balances and statements on a
wallet whose history `ledger.history_seed` writes in SQL), `chaos/` (the fault-injection
run). Requests go
through `tally.load_client` (all but the slow clients' unfinished ones: `pressure`),
webhooks land on `tally.webhook_receiver`, and what a run reads back from the database is
`ledger.measurements`.

The package itself imports nothing: the load-generator processes import only `load` and
`tally.load_client`.
"""
