"""Engines, the unit of work, and the tenant each transaction works for.

Every ledger write runs in one `UnitOfWork`: one PostgreSQL transaction, committed when its
block ends normally and rolled back otherwise, with what must happen only once it has
committed (publishing new transaction ids to the workers) queued on it. A use case that is
one transaction takes the open unit of work; one that needs several (the posting engine,
the hold sweeper) takes the engine and opens each with `unit_of_work`
(docs/design.md#use-cases-and-the-unit-of-work).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError

from config.database_urls import sqlalchemy_url
from config.settings import API_ROLE
from ledger.money import register_money_loader

log = logging.getLogger(__name__)
T = TypeVar("T")
# Sends committed transaction ids to the workers; False if the broker would not take them.
Publish = Callable[[Sequence[str]], object]

# A table every migrated database has: its owner is the service role the API must not reach.
OWNED_TABLE = "transactions"


class LoginRefused(RuntimeError):
    """The API's database login could undo row-level security."""


ACTS_AS = "SELECT current_user, pg_has_role(current_user, %s, 'USAGE')"
# Roles the login is, or can become with SET ROLE, that would lift row-level security:
# a superuser, one with BYPASSRLS, or the tables' owner (its policy sees every row).
UNSAFE_ROLES = """
    SELECT r.rolname, r.rolsuper, r.rolbypassrls
    FROM pg_roles r LEFT JOIN pg_class t ON t.oid = to_regclass(%s)
    WHERE pg_has_role(current_user, r.oid, 'MEMBER')
      AND (r.rolsuper OR r.rolbypassrls OR r.oid = t.relowner)
    ORDER BY r.rolname
"""


def login_fault(dbapi_connection: psycopg.Connection[Any], role: str) -> str | None:
    """Why this connection's login must not serve `role`'s queries, or None: it does not act
    as `role`, or it is or can become a superuser, a role that bypasses row-level security,
    or the tables' owner (from there `RESET ROLE` or `SET ROLE` undoes tenant isolation)."""
    try:
        row = dbapi_connection.execute(ACTS_AS, [role]).fetchone()
        assert row is not None
        user, acts_as_role = row
        if not acts_as_role:
            return f"the API logs in as {user}, which does not act as {role}"
        unsafe = dbapi_connection.execute(UNSAFE_ROLES, [OWNED_TABLE]).fetchall()
    finally:
        dbapi_connection.rollback()
    for name, superuser, bypass in unsafe:
        what = "a superuser" if superuser else "BYPASSRLS" if bypass else "the tables' owner"
        how = "is" if name == user else f"can SET ROLE to {name}, which is"
        return (
            f"the API logs in as {user}, which {how} {what}: row-level security would not"
            " hold (give it its own login, docs/security.md#roles-and-logins)"
        )
    return None


def refuse_unsafe_logins(engine: Engine, role: str = API_ROLE) -> None:
    """Check every connection `engine` opens (login_fault) and refuse it, LoginRefused,
    when its login could undo row-level security: nothing runs on such a connection, even
    if the database was out of reach when the process started."""

    @event.listens_for(engine, "connect")
    def _check(dbapi_connection: Any, _record: Any) -> None:
        fault = login_fault(dbapi_connection, role)
        if fault is not None:
            raise LoginRefused(fault)


def guard_api_login(engine: Engine) -> None:
    """Check every connection `engine` opens (refuse_unsafe_logins), starting with one
    opened now: LoginRefused for a login that could undo row-level security,
    OperationalError when the database does not answer (later connections are checked
    all the same)."""
    refuse_unsafe_logins(engine)
    with engine.connect():
        pass


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
    def _prepare(dbapi_connection: Any, _record: Any) -> None:
        # psycopg sends a Python list as a text array by default, escaping every element
        # with regular expressions: the hottest spot of both the worker (about 2 ms of CPU
        # per batch of 50, mostly the outbox's JSON payloads) and the API's single-row
        # insert (a fifth of its CPU). The binary form costs a tenth of that.
        dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)
        # Money columns are numeric: load them as int, not Decimal (ledger/money.py).
        register_money_loader(dbapi_connection)

    return engine


def database_answers(conn: Connection) -> bool:
    """Whether the database runs a statement now (the health check)."""
    conn.execute(text("SELECT 1"))
    return True


# --- the unit of work ---------------------------------------------------------------------


class UnitOfWork:
    """One transaction on a connection, and what must happen only once it has committed."""

    def __init__(self, connection: Connection, publish: Publish | None = None) -> None:
        self.connection = connection
        self._publish = publish
        self._after_commit: list[Callable[[], object]] = []

    def after_commit(self, hook: Callable[[], object]) -> None:
        """Run `hook` after the commit (never after a rollback)."""
        self._after_commit.append(hook)

    def publish(self, transaction_ids: Sequence[str]) -> None:
        """Send these ids to the workers once the commit has made them visible. Without a
        publisher (or if the broker fails) the relay finds them still queued."""
        if transaction_ids and self._publish is not None:
            publish = self._publish
            ids = list(transaction_ids)
            # After the commit: a worker must never receive an id it cannot see yet.
            self.after_commit(lambda: publish(ids))

    def _committed(self) -> None:
        for hook in self._after_commit:
            try:
                hook()
            except Exception:
                # The commit stands: an after-commit failure must not turn it into an error
                # (a transaction left unpublished is found by the relay).
                log.exception("after-commit hook failed")


@contextmanager
def unit_of_work(
    bind: Engine | Connection, *, publish: Publish | None = None
) -> Iterator[UnitOfWork]:
    """The block as one unit of work: on a new connection of an engine (commands, tasks)
    or on a connection the caller holds (a request's). Committed when the block ends
    normally, then its after-commit hooks run; rolled back otherwise."""
    with ExitStack() as stack:
        connection = bind if isinstance(bind, Connection) else stack.enter_context(bind.connect())
        work = UnitOfWork(connection, publish)
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
    """Run `attempt` again when PostgreSQL aborted it with a serialization failure or a
    deadlock; up to `attempts` runs, with jittered backoff. `attempt` is a whole
    transaction, or a savepoint of one."""
    for number in range(attempts):
        try:
            return attempt()
        except DBAPIError as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES or number == attempts - 1:
                raise
            log.info("retrying after %s (attempt %d)", sqlstate(error), number + 1)
            time.sleep(random.uniform(0, backoff * 2**number))
    raise AssertionError("unreachable")  # pragma: no cover


# --- the tenant a transaction works for (row-level security) ---------------------------------

BIND_TENANT = "SELECT set_config('tally.tenant_id', %s, true)"
# BEGIN and the binding in one simple-query message: one round trip where psycopg's own
# BEGIN followed by the bound statement would be two. The tenant id is a UUID rendered by
# `uuid.UUID` (hex digits and dashes), so it is inlined safely.
BEGIN_FOR_TENANT = "BEGIN; SELECT set_config('tally.tenant_id', '{tenant}', true)"
# The tenant this thread's (or task's) transactions are for: set per request by the API
# and cleared at its teardown (request threads are reused).
_tenant: ContextVar[uuid.UUID | None] = ContextVar("tally_tenant", default=None)
# The wallet owner a wallet token's request works for (api/wallet_token_auth.py), beside
# its tenant: row-level security then narrows reads to that user's wallet (migration 0013).
# Bound as a parameter, never inlined: a user id is the merchant's text.
BIND_USER = "SELECT set_config('tally.user_id', %s, true)"
_user: ContextVar[str | None] = ContextVar("tally_user", default=None)


def bind_tenant(tenant_id: uuid.UUID | None) -> None:
    """Make the transactions this thread begins from now on work for `tenant_id`."""
    _tenant.set(tenant_id)


def bind_user(user_id: str | None) -> None:
    """Make the transactions this thread begins from now on work for one wallet owner
    (with the tenant bound by `bind_tenant`); None for a request made with an API key."""
    _user.set(user_id)


@contextmanager
def tenant_scope(tenant_id: uuid.UUID, user_id: str | None = None) -> Iterator[None]:
    """The transactions begun in the block work for `tenant_id` (outside a request), and
    with `user_id` for that wallet owner alone."""
    token = _tenant.set(tenant_id)
    user_token = _user.set(user_id)
    try:
        yield
    finally:
        _user.reset(user_token)
        _tenant.reset(token)


def bind_transactions_to_tenant(engine: Engine) -> None:
    """Begin every transaction of `engine` bound to the current tenant (`bind_tenant`), so
    that row-level security shows it that tenant's rows alone, and none before one is
    bound. For an engine whose connections log in as the API's role."""

    @event.listens_for(engine, "begin")
    def _bind(conn: Connection) -> None:
        tenant_id = _tenant.get()
        if tenant_id is not None:
            # SQLAlchemy's BEGIN is implicit: this message begins the transaction, so the
            # setting holds for all of it and ends with it.
            dbapi_connection = conn.connection.dbapi_connection
            try:
                _begin_for_tenant(dbapi_connection, tenant_id, _user.get())  # type: ignore[arg-type]
            except psycopg.OperationalError as error:
                # Raised outside SQLAlchemy's statement handling: wrap it as SQLAlchemy
                # would, so that a database going away is a 503 like any other, not a 500.
                raise OperationalError(
                    BIND_TENANT, [str(tenant_id)], error, connection_invalidated=True
                ) from error


def _begin_for_tenant(
    dbapi_connection: psycopg.Connection[Any], tenant_id: uuid.UUID, user_id: str | None = None
) -> None:
    """Begin a transaction bound to `tenant_id` (and `user_id`, if any) on the raw psycopg
    connection."""
    _begin_bound_to_tenant(dbapi_connection, tenant_id)
    if user_id is not None:
        dbapi_connection.execute(BIND_USER, [user_id])


def _begin_bound_to_tenant(dbapi_connection: psycopg.Connection[Any], tenant_id: uuid.UUID) -> None:
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
