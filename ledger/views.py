"""The one JSON shape of a transaction: the status endpoint, replays and webhook payloads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ledger.vocabulary import TransactionType


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


def transaction_view(
    row: Mapping[Any, Any],
    balances_after: Mapping[str, int],
    hold: Mapping[Any, Any] | None = None,
) -> dict[str, Any]:
    """Render a transaction row; `balances_after` maps wallet owner to its balance after it,
    and `hold` is the `holds` row of an applied hold."""
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
        "balance_after": balances_after.get(row["user_id"]),
        "metadata": row["metadata"],
        "created_at": iso(row["created_at"]),
        "completed_at": iso(row["completed_at"]),
    }
    for optional in ("payment_method", "bonus_type", "item_id", "reason"):
        if row[optional] is not None:
            view[optional] = row[optional]
    if row["to_user_id"] is not None:
        view["to_user_id"] = row["to_user_id"]
        view["to_balance_after"] = balances_after.get(row["to_user_id"])
    if row["original_transaction_id"] is not None:
        view["original_transaction_id"] = str(row["original_transaction_id"])
    if row["type"] == TransactionType.HOLD:
        view["expires_at"] = iso(row["expires_at"])
        view["hold"] = hold_view(hold) if hold is not None else None
    return view
