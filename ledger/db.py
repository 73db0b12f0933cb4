"""Engines and the unit of work: one PostgreSQL transaction per use case."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

from config.database_urls import sqlalchemy_url


def make_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    statement_timeout_ms: int = 30_000,
    pre_ping: bool = True,
    generic_plans: bool = False,
) -> Engine:
    """An engine for the ledger database; created by the edges, never at import time.

    `pre_ping=False` spares a round trip per checkout (the API's hot path): a connection
    that died with a database restart then fails its first statement, which answers `503`
    once and makes SQLAlchemy replace the pool's stale connections.

    `generic_plans=True` plans each prepared statement once per connection. PostgreSQL
    otherwise re-plans a statement on every execution while a plan for the actual values
    looks cheaper than the generic one, as it always does for the intake insert (one row
    of `unnest` against an estimate of many): about 2 ms of server CPU per submission,
    ten times its execution.
    """
    options = f"-c statement_timeout={statement_timeout_ms}"
    if generic_plans:
        options += " -c plan_cache_mode=force_generic_plan"
    engine = create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        connect_args={
            # Fail fast with 503 when the database is gone, rather than hang a request thread.
            "connect_timeout": 5,
            # No statement may hold locks on hot accounts indefinitely.
            "options": options,
        },
    )

    @event.listens_for(engine, "connect")
    def _binary_arrays(dbapi_connection: Any, _record: Any) -> None:
        # psycopg sends a Python list as a text array by default, escaping every element
        # with regular expressions: the hottest spot of both the worker (about 2 ms of CPU
        # per batch of 50, mostly the outbox's JSON payloads) and the API's single-row
        # insert (a fifth of its CPU). The binary form costs a tenth of that.
        dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)

    return engine


log = logging.getLogger(__name__)
T = TypeVar("T")


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Connection]:
    """One transaction: committed when the block ends normally, rolled back otherwise."""
    with engine.begin() as connection:
        yield connection


class UnitOfWork:
    """One transaction on a connection, and what must happen only once it has committed."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._after_commit: list[Callable[[], object]] = []

    def after_commit(self, hook: Callable[[], object]) -> None:
        """Run `hook` after the commit (never after a rollback), e.g. to publish new ids."""
        self._after_commit.append(hook)

    def _committed(self) -> None:
        for hook in self._after_commit:
            try:
                hook()
            except Exception:
                # The commit stands: an after-commit failure must not turn it into an error
                # (a transaction left unpublished is found by the relay).
                log.exception("after-commit hook failed")


@contextmanager
def transaction(connection: Connection) -> Iterator[UnitOfWork]:
    """The block as one transaction on `connection`: committed when it ends normally, then
    its after-commit hooks run; rolled back otherwise."""
    work = UnitOfWork(connection)
    try:
        yield work
    except BaseException:
        connection.rollback()
        raise
    connection.commit()
    work._committed()


SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
RETRYABLE_SQLSTATES = frozenset({SERIALIZATION_FAILURE, DEADLOCK_DETECTED})


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error wrapped by SQLAlchemy, if any."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None)


def retry_on_conflict(attempt: Callable[[], T], *, attempts: int, backoff: float) -> T:
    """Run `attempt` (a whole transaction) again when PostgreSQL aborted it with a
    serialization failure or a deadlock; up to `attempts` runs, with jittered backoff."""
    for number in range(attempts):
        try:
            return attempt()
        except DBAPIError as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES or number == attempts - 1:
                raise
            log.info("retrying after %s (attempt %d)", sqlstate(error), number + 1)
            time.sleep(random.uniform(0, backoff * 2**number))
    raise AssertionError("unreachable")  # pragma: no cover
