"""How the console writes amounts and moments: minor units in the asset's decimals, UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import g

from api.console.blueprint import bp, principal
from api.database import request_connection
from ledger.assets import list_assets


def _decimals(asset_code: str | None) -> int:
    if "asset_decimals" not in g:
        with request_connection() as conn:
            g.asset_decimals = {
                asset["code"]: asset["decimal_places"]
                for asset in list_assets(conn, principal().tenant_id)
            }
    return int(g.asset_decimals.get(asset_code, 0))


@bp.app_template_filter("money")
def money(amount: int | None, asset_code: str | None = None) -> str:
    """12345 USD (2 decimals) -> '123.45 USD'; exact, from the integer."""
    if amount is None:
        return "—"
    places = _decimals(asset_code)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**places) if places else (abs(amount), 0)
    text = f"{sign}{whole:,}" + (f".{fraction:0{places}d}" if places else "")
    return f"{text} {asset_code}" if asset_code else text


@bp.app_template_filter("when")
def when(moment: datetime | str | None) -> str:
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@bp.app_template_filter("percent")
def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.1f} %"
