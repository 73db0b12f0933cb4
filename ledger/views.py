"""The one JSON shape of a transaction: the status endpoint, replays and webhook payloads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from ledger.legs import leg_owner
from ledger.vocabulary import TransactionType

# Significant digits of an exchange's rate (to_amount / amount) as shown; the amounts
# themselves are exact.
RATE_DIGITS = 20

BalancesAfter = Mapping[tuple[str, str], int]
"""(asset_code, wallet owner) -> the wallet's balance right after a transaction."""
Sequences = Mapping[tuple[str, str], int]
"""(asset_code, wallet owner) -> the wallet's version (account_version) right after it."""


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text of a timestamp, or None."""
    return value.isoformat() if value is not None else None


def hold_view(hold: Mapping[Any, Any]) -> dict[str, Any]:
    """The `hold` object of a hold's transaction: its state, from its `holds` row."""
    captured_by, voided_by = hold["captured_by"], hold["voided_by"]
    return {
        "status": str(hold["status"]),
        "amount": hold["amount"],
        "captured_amount": hold["captured_amount"],
        "expires_at": iso(hold["expires_at"]),
        "captured_by": str(captured_by) if captured_by else None,
        "voided_by": str(voided_by) if voided_by else None,
    }


def exchange_rate(sold: int, bought: int) -> str:
    """`bought / sold` as a plain decimal string (no exponent), RATE_DIGITS significant."""
    with localcontext() as context:
        context.prec = RATE_DIGITS
        rate = (Decimal(bought) / Decimal(sold)).normalize()
    return format(rate, "f")


def transaction_view(
    row: Mapping[Any, Any],
    balances_after: BalancesAfter,
    hold: Mapping[Any, Any] | None = None,
    sequences: Sequences | None = None,
) -> dict[str, Any]:
    """Render a transaction row; `balances_after` holds the balances of the wallets it moved
    right after it, `sequences` their versions (the `wallets` list), and `hold` is the
    `holds` row of an applied hold."""
    asset = row["asset_code"]
    view: dict[str, Any] = {
        "id": str(row["id"]),
        "type": row["type"],
        "status": row["status"],
        "reference_id": row["reference_id"],
        "user_id": row["user_id"],
        "asset_code": row["asset_code"],
        "amount": row["amount"],
        "result": (
            {"code": row["result_code"], "message": row["result_message"]}
            if row["result_code"]
            else None
        ),
        "balance_after": balances_after.get((asset, row["user_id"])),
        "metadata": row["metadata"],
        "created_at": iso(row["created_at"]),
        "completed_at": iso(row["completed_at"]),
    }
    for optional in (
        "payment_method",
        "bonus_type",
        "item_id",
        "reason",
        "to_account",
        "payout_method",
        "destination",
    ):
        if row.get(optional) is not None:
            view[optional] = row[optional]
    if row.get("effective_at") is not None:
        view["effective_at"] = iso(row["effective_at"])
    if row["to_user_id"] is not None:
        view["to_user_id"] = row["to_user_id"]
        view["to_balance_after"] = balances_after.get((asset, row["to_user_id"]))
    if row.get("splits") is not None:
        view["splits"] = [_leg_view(leg, asset, balances_after) for leg in row["splits"]]
    if row["type"] == TransactionType.EXCHANGE:
        buyer = row["to_user_id"] or row["user_id"]
        view["to_asset_code"] = row["to_asset_code"]
        view["to_amount"] = row["to_amount"]
        view["rate"] = exchange_rate(row["amount"], row["to_amount"])
        view["to_balance_after"] = balances_after.get((row["to_asset_code"], buyer))
    if row.get("postings") is not None:
        view["postings"] = [dict(posting) for posting in row["postings"]]
    if row["original_transaction_id"] is not None:
        view["original_transaction_id"] = str(row["original_transaction_id"])
    if row["type"] == TransactionType.HOLD:
        view["expires_at"] = iso(row["expires_at"])
        view["hold"] = hold_view(hold) if hold is not None else None
    if sequences:
        view["wallets"] = wallets_view(balances_after, sequences)
    return view


def wallets_view(balances_after: BalancesAfter, sequences: Sequences) -> list[dict[str, Any]]:
    """Each wallet a transaction moved, by asset then owner: its sequence and balance after."""
    return [
        {
            "user_id": owner,
            "asset_code": asset,
            "sequence": sequence,
            "balance_after": balances_after[(asset, owner)],
        }
        for (asset, owner), sequence in sorted(sequences.items())
    ]


def _leg_view(
    leg: Mapping[str, Any], asset: str | None, balances_after: BalancesAfter
) -> dict[str, Any]:
    """A leg as given, and the balance its wallet was left with."""
    view = dict(leg)
    if "to_user_id" in leg:
        view["balance_after"] = balances_after.get((str(asset), leg_owner(leg)))
    return view
