"""One database connection per request: authentication and the view share it.

The first use checks a connection out of the pool; the request's teardown returns it.
A view that writes does so in `request_transaction()`, committed where the block ends.
Before a long-poll the view hands the connection back, so waiting holds no connection.

The API's connections run as the `tally_api` role, under row-level security (migration
0005): every transaction they begin names the tenant it works for first
(`tally.tenant_id`, transaction-local), so a query that forgets its `WHERE tenant_id`
still sees only that tenant's rows, and one begun before authentication sees none.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import psycopg
from flask import Flask, g
from psycopg import pq
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import OperationalError

from api.context import tally
from ledger.db import UnitOfWork, transaction


@contextmanager
def request_connection() -> Iterator[Connection]:
    """This request's connection (checked out on first use), for reads."""
    conn: Connection | None = g.get("db")
    if conn is None:
        conn = g.db = tally().engine.connect()
    yield conn


@contextmanager
def request_unit_of_work() -> Iterator[UnitOfWork]:
    """The request's unit of work: committed when the block ends normally, else rolled back;
    its after-commit hooks run once it has committed."""
    with request_connection() as conn, transaction(conn) as work:
        yield work


@contextmanager
def request_transaction() -> Iterator[Connection]:
    """`request_unit_of_work`, for a view that needs only the connection."""
    with request_unit_of_work() as work:
        yield work.connection


def release_request_connection() -> None:
    """Return the connection to the pool now (before waiting, and at teardown)."""
    conn: Connection | None = g.pop("db", None)
    if conn is not None:
        conn.close()


API_ROLE = "tally_api"
BIND_TENANT = "SELECT set_config('tally.tenant_id', %s, true)"
# BEGIN and the binding in one simple-query message: one round trip where psycopg's own
# BEGIN followed by the bound statement would be two. The tenant id is a UUID rendered by
# `uuid.UUID` (hex digits and dashes), so it is inlined safely.
BEGIN_FOR_TENANT = "BEGIN; SELECT set_config('tally.tenant_id', '{tenant}', true)"
# The tenant this thread's transactions are for. Request threads are reused, so the
# request's teardown clears it.
_tenant: ContextVar[uuid.UUID | None] = ContextVar("tally_tenant", default=None)


def bind_request_tenant(tenant_id: uuid.UUID | None) -> None:
    """Make the transactions this thread begins from now on work for `tenant_id`."""
    _tenant.set(tenant_id)


@contextmanager
def tenant_scope(tenant_id: uuid.UUID) -> Iterator[None]:
    """The transactions begun in the block work for `tenant_id` (outside a request)."""
    token = _tenant.set(tenant_id)
    try:
        yield
    finally:
        _tenant.reset(token)


def run_as_api_role(engine: Engine) -> None:
    """Make every connection of `engine` the `tally_api` role, each transaction bound to
    the current tenant."""

    @event.listens_for(engine, "connect")
    def _set_role(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"SET ROLE {API_ROLE}")
        dbapi_connection.commit()

    @event.listens_for(engine, "begin")
    def _bind_tenant(conn: Connection) -> None:
        tenant_id = _tenant.get()
        if tenant_id is not None:
            # SQLAlchemy's BEGIN is implicit: this message begins the transaction, so the
            # setting holds for all of it and ends with it.
            dbapi_connection = conn.connection.dbapi_connection
            try:
                _begin_for_tenant(dbapi_connection, tenant_id)  # type: ignore[arg-type]
            except psycopg.OperationalError as error:
                # Raised outside SQLAlchemy's statement handling: wrap it as SQLAlchemy
                # would, so that a database going away is a 503 like any other, not a 500.
                raise OperationalError(
                    BIND_TENANT, [str(tenant_id)], error, connection_invalidated=True
                ) from error


def _begin_for_tenant(dbapi_connection: psycopg.Connection[Any], tenant_id: uuid.UUID) -> None:
    """Begin a transaction bound to `tenant_id` on the raw psycopg connection."""
    pgconn = dbapi_connection.pgconn
    plain_begin = (
        dbapi_connection.isolation_level is None
        and dbapi_connection.read_only is None
        and dbapi_connection.deferrable is None
    )
    if pgconn.transaction_status != pq.TransactionStatus.IDLE or not plain_begin:
        # Already in a transaction, or one psycopg must begin with its own options.
        dbapi_connection.execute(BIND_TENANT, [str(tenant_id)])
        return
    # PQexec blocks (without the GIL); libpq returns the last statement's result, or the
    # first error.
    command = BEGIN_FOR_TENANT.format(tenant=uuid.UUID(str(tenant_id)))
    result = pgconn.exec_(command.encode())
    if result.status == pq.ExecStatus.TUPLES_OK:
        return
    if pgconn.status == pq.ConnStatus.OK and result.status == pq.ExecStatus.FATAL_ERROR:
        raise psycopg.errors.error_from_result(result, encoding=dbapi_connection.info.encoding)
    message = pgconn.error_message.decode(errors="replace").strip()
    raise psycopg.OperationalError(f"could not begin a transaction: {message}")


def _teardown(_error: BaseException | None) -> None:
    release_request_connection()
    bind_request_tenant(None)


def init_app(app: Flask) -> None:
    app.teardown_request(_teardown)
