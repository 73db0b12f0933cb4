"""Money: integers of minor units, 128-bit, and how they come back from PostgreSQL.

Every transaction amount, wallet balance, pending amount and credit limit is an `int`
within ±MAX_AMOUNT, stored as `numeric(39,0)` with a CHECK constraint (migration
0007_money_128). System accounts are the other side of every wallet's movements, so their
balances grow without bound: they are stored wider, with no ceiling, and never block a
transaction on their own size (docs/design.md#money).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg.abc import AdaptContext
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg.types.numeric import NumericBinaryLoader

# The ceiling of any amount and any wallet balance, pending amount or credit limit: the
# largest signed 128-bit integer, about 1.7 * 10**38 minor units, so a wallet of an
# 18-decimal asset still holds about 1.7 * 10**20 whole units.
MAX_AMOUNT = 2**127 - 1

# Fields of the API's JSON (requests and answers) that carry money, at any depth: a split's
# legs and a journal's postings carry theirs as `amount`. `Tally-Amounts: string` renders
# them as decimal strings and accepts them as such (docs/api.md#amounts).
MONEY_FIELDS = frozenset(
    {
        "amount",
        "available",
        "balance",
        "balance_after",
        "captured_amount",
        "credit_limit",
        "pending",
        "to_amount",
        "to_balance_after",
    }
)


DOT = ord(".")


class IntegralNumericLoader(Loader):
    """`numeric` as `int` when it is a whole number (every money column, and sums of them),
    as `Decimal` otherwise (an average, a ratio): money never passes through Decimal."""

    def load(self, data: Any) -> int | Decimal:
        # Text format: a whole number has no '.', and NaN or Infinity fail int(). The
        # buffer psycopg hands over (a memoryview) holds ints, and int() reads it as it is.
        if DOT not in data:
            try:
                return int(data)
            except ValueError:
                pass
        return Decimal(bytes(data).decode())


class IntegralNumericBinaryLoader(Loader):
    """The same for results asked for in binary: a value of scale 0 loads as `int`."""

    format = Format.BINARY

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._numeric = NumericBinaryLoader(oid, context)

    def load(self, data: Any) -> int | Decimal:
        value = self._numeric.load(data)
        if value.is_finite() and int(value.as_tuple().exponent) >= 0:
            return int(value)
        return value


def register_money_loader(context: AdaptContext) -> None:
    """Load `numeric` on this connection (or context) as `int` where it is whole."""
    context.adapters.register_loader("numeric", IntegralNumericLoader)
    context.adapters.register_loader("numeric", IntegralNumericBinaryLoader)
