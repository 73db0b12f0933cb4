"""One database connection per request: authentication and the view share it.

The first use checks a connection out of the pool; the request's teardown returns it.
Reads use `request_connection()`; a use case runs in `request_unit_of_work()`, committed
where its block ends, publishing to the workers once committed. Before a long-poll the
view hands the connection back, so waiting holds no connection.

The API's connections run as the `tally_api` role, under row-level security: every
transaction they begin names the tenant it works for first (ledger/db.py, `bind_tenant`),
so a query that forgets its `WHERE tenant_id` still sees only that tenant's rows, and one
begun before authentication sees none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from api.context import tally
from ledger.db import UnitOfWork, bind_tenant, bind_user, unit_of_work

log = logging.getLogger(__name__)


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
    new transaction ids it publishes go to the workers once it has committed."""
    publish = tally().publisher.publish
    with request_connection() as conn, unit_of_work(conn, publish=publish) as work:
        yield work


def release_request_connection() -> None:
    """Return the connection to the pool now (before waiting, and at teardown)."""
    conn: Connection | None = g.pop("db", None)
    if conn is None:
        return
    try:
        conn.close()
    except DBAPIError as error:
        # Closing rolls back what the view left open (its reads); a database that went
        # away since its last statement fails that rollback. The answer is decided and
        # nothing was left to undo: the pool drops the dead connection, never a 500.
        log.warning("database connection lost after the request: %s", error.orig)


def _teardown(_error: BaseException | None) -> None:
    release_request_connection()
    bind_tenant(None)
    bind_user(None)


def init_app(app: Flask) -> None:
    app.teardown_request(_teardown)
