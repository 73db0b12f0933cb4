"""Engines and the unit of work: one PostgreSQL transaction per use case."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine

from config.database_urls import sqlalchemy_url


def make_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    statement_timeout_ms: int = 30_000,
) -> Engine:
    """An engine for the ledger database; created by the edges, never at import time."""
    return create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        connect_args={
            # Fail fast with 503 when the database is gone, rather than hang a request thread.
            "connect_timeout": 5,
            # No statement may hold locks on hot accounts indefinitely.
            "options": f"-c statement_timeout={statement_timeout_ms}",
        },
    )


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed when the block ends normally, rolled back otherwise."""
    with engine.begin() as connection:
        yield connection


SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
RETRYABLE_SQLSTATES = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error wrapped by SQLAlchemy, if any."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None)
