"""One database connection per request: authentication and the view share it.

The first use checks a connection out of the pool; the request's teardown returns it.
A view that writes does so in `request_transaction()`, committed where the block ends.
Before a long-poll the view hands the connection back, so waiting holds no connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, g
from sqlalchemy import Connection

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


def init_app(app: Flask) -> None:
    app.teardown_request(lambda _error: release_request_connection())
