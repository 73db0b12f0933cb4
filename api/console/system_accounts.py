"""System accounts per asset with their balances, read-only (defining one is the API's)."""

from __future__ import annotations

from itertools import groupby

from api.console.blueprint import bp, principal, render
from api.database import request_connection
from ledger.system_accounts import list_system_accounts


@bp.get("/system-accounts")
def system_accounts() -> tuple[str, int]:
    with request_connection() as conn:
        accounts = list_system_accounts(conn, principal().tenant_id)
    # Listed by asset then name: one table per asset.
    by_asset = [(code, list(rows)) for code, rows in groupby(accounts, lambda a: a["asset_code"])]
    return render("system_accounts.html", 200, by_asset=by_asset)
