"""Statements: a wallet's movements over a period, in effective order, between its balance
as of the period's start and as of its end.

The period `(from, to]` holds the entries with `from < effective_at <= to`; the opening
balance is the wallet's balance as of `from`, the closing one as of `to` (both by
ledger/ledger_time.py), so opening + the period's entries = closing. Entries come in
(effective_at, entry id) order, each with the running balance after it; a page starts from
the running balance before its first entry, computed from the latest snapshot before it
(`balance_through`), never by summing from `from`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, text

from ledger.db import tenant_scope
from ledger.errors import InvalidRequest, WalletNotFound
from ledger.ledger_time import balance_as_of, balance_through
from ledger.pagination import decode_cursor, encode_cursor

# A statement is read whole, so a page may hold ten times the 1,000 entries a CSV batch
# reads: a month of a busy wallet in one answer (about 2.5 MB of JSON).
MAX_STATEMENT_PAGE = 10_000
# Entry ids are bigints: a position after this id is after every entry of its moment.
LAST_ID = 2**63 - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

WALLET = text(
    """
    SELECT a.id, s.decimal_places, now() AS now
    FROM accounts a JOIN assets s ON s.tenant_id = a.tenant_id AND s.code = a.asset_code
    WHERE a.tenant_id = :tenant_id AND a.asset_code = :asset_code AND a.owner = :owner
      AND NOT a.is_system
    """
)
# The period's entries after a position, in effective order (the (account_id,
# effective_at, id) index, read as a range). The position is spelled out, not compared as
# a row: under row-level security only leakproof quals bound the index scan.
ENTRIES = text(
    """
    SELECT e.id, e.effective_at, e.created_at, e.transaction_id, t.type, t.reference_id,
           e.amount
    FROM entries e JOIN transactions t ON t.id = e.transaction_id
    WHERE e.account_id = :id AND e.effective_at > :start AND e.effective_at <= :end
      AND e.effective_at >= :after_at AND (e.effective_at > :after_at OR e.id > :after_id)
      AND (CAST(:known_at AS timestamptz) IS NULL OR e.created_at <= :known_at)
    ORDER BY e.effective_at, e.id
    LIMIT :limit
    """
)
TOTALS = text(
    """
    SELECT t.type,
           coalesce(sum(e.amount) FILTER (WHERE e.amount > 0), 0) AS credits,
           coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0), 0) AS debits
    FROM entries e JOIN transactions t ON t.id = e.transaction_id
    WHERE e.account_id = :id AND e.effective_at > :start AND e.effective_at <= :end
      AND (CAST(:known_at AS timestamptz) IS NULL OR e.created_at <= :known_at)
    GROUP BY t.type ORDER BY t.type
    """
)


@dataclass(frozen=True)
class Period:
    """A wallet's statement period `(start, end]`, as known at `known_at` (None: now)."""

    account_id: int
    user_id: str
    asset_code: str
    decimal_places: int
    start: datetime
    end: datetime
    known_at: datetime | None = None


def open_statement(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    start: datetime,
    end: datetime | None = None,
    *,
    pin: bool = False,
) -> Period:
    """The period of a wallet's statement, `end` by default now; with `pin`, read as known
    now, so that reads spread over several transactions see the same entries.
    WalletNotFound, or InvalidRequest `invalid_period` unless start < end."""
    params = {"tenant_id": tenant_id, "asset_code": asset_code, "owner": user_id}
    row = conn.execute(WALLET, params).mappings().first()
    if row is None:
        raise WalletNotFound(f"no {asset_code} wallet for user {user_id!r}")
    end = row["now"] if end is None else end
    if not start < end:
        raise InvalidRequest("invalid_period", "from must be before to", field="from")
    return Period(
        account_id=int(row["id"]),
        user_id=user_id,
        asset_code=asset_code,
        decimal_places=int(row["decimal_places"]),
        start=start,
        end=end,
        known_at=row["now"] if pin else None,
    )


def statement_cursor(effective_at: datetime, entry_id: int) -> str:
    """The cursor of a statement page that continues after this entry."""
    delta = effective_at - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return encode_cursor(f"s1:{micros}:{entry_id}")


def cursor_position(cursor: str) -> tuple[datetime, int]:
    """The (effective_at, entry id) a statement page continues after; InvalidCursor if the
    cursor is not one a statement page returned."""
    return decode_cursor(cursor, _position)


def _position(position: str) -> tuple[datetime, int]:
    prefix, micros, entry_id = position.split(":")
    try:
        moment = EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        raise ValueError(position) from None
    number = int(entry_id)
    if prefix != "s1" or not 1 <= number <= LAST_ID:
        raise ValueError(position)
    return moment, number


def _entries(
    conn: Connection, period: Period, after: tuple[datetime, int], limit: int
) -> list[RowMapping]:
    params = {
        "id": period.account_id,
        "start": period.start,
        "end": period.end,
        "after_at": after[0],
        "after_id": after[1],
        "known_at": period.known_at,
        "limit": limit,
    }
    return list(conn.execute(ENTRIES, params).mappings())


def _with_running(rows: list[RowMapping], balance: int) -> list[dict[str, Any]]:
    items = []
    for row in rows:
        balance += row["amount"]
        items.append(
            {
                "effective_at": row["effective_at"].isoformat(),
                "recorded_at": row["created_at"].isoformat(),
                "transaction_id": str(row["transaction_id"]),
                "type": row["type"],
                "reference_id": row["reference_id"],
                "amount": row["amount"],
                "running_balance": balance,
            }
        )
    return items


def statement_totals(conn: Connection, period: Period) -> dict[str, dict[str, int]]:
    """Per transaction type: the period's credits and debits (both positive sums)."""
    params = {
        "id": period.account_id,
        "start": period.start,
        "end": period.end,
        "known_at": period.known_at,
    }
    return {
        row["type"]: {"credits": row["credits"], "debits": row["debits"]}
        for row in conn.execute(TOTALS, params).mappings()
    }


def statement_summary(conn: Connection, period: Period) -> dict[str, Any]:
    """What every page of a statement carries: the wallet, the period, the opening and
    closing balances, the totals per type."""
    account, known_at = period.account_id, period.known_at
    return {
        "user_id": period.user_id,
        "asset_code": period.asset_code,
        "decimal_places": period.decimal_places,
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "opening_balance": balance_as_of(conn, account, period.start, known_at),
        "closing_balance": balance_as_of(conn, account, period.end, known_at),
        "totals": statement_totals(conn, period),
    }


def wallet_statement(
    conn: Connection,
    tenant_id: uuid.UUID,
    user_id: str,
    asset_code: str,
    *,
    start: datetime,
    end: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One keyset page of a wallet's statement: the summary, the running balance before the
    page (`page_opening_balance`), at most `limit` entries and the next page's cursor."""
    after = cursor_position(cursor) if cursor else None
    period = open_statement(conn, tenant_id, user_id, asset_code, start, end)
    limit = max(1, min(limit, MAX_STATEMENT_PAGE))
    summary = statement_summary(conn, period)
    rows = _entries(conn, period, after or (period.start, LAST_ID), limit + 1)
    page = rows[:limit]
    opening = (
        summary["opening_balance"]
        if after is None
        else balance_through(conn, period.account_id, after[0], after[1], period.known_at)
    )
    next_cursor = None
    if len(rows) > limit:
        next_cursor = statement_cursor(page[-1]["effective_at"], page[-1]["id"])
    return {
        **summary,
        "page_opening_balance": opening,
        "entries": _with_running(page, opening),
        "next_cursor": next_cursor,
    }


def statement_batches(
    engine: Engine, tenant_id: uuid.UUID, period: Period, batch_size: int = 1000
) -> Iterator[list[dict[str, Any]]]:
    """A whole statement period's entries with running balances, in batches of
    `batch_size`, each read in a short transaction of its own for the tenant: no
    connection is held between batches. Pin the period (`open_statement(pin=True)`) so that
    every batch reads the ledger as known at one moment."""
    after = (period.start, LAST_ID)
    balance: int | None = None
    while True:
        with tenant_scope(tenant_id), engine.connect() as conn:
            if balance is None:
                balance = balance_as_of(conn, period.account_id, period.start, period.known_at)
            rows = _entries(conn, period, after, batch_size)
        if not rows:
            return
        items = _with_running(rows, balance)
        balance = items[-1]["running_balance"]
        after = (rows[-1]["effective_at"], rows[-1]["id"])
        yield items
        if len(rows) < batch_size:
            return
