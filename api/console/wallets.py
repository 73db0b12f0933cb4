"""Wallets: find a user's, see balances per asset with history and holds, a statement over a
period (and its CSV), and freeze, unfreeze or close one after a confirmation, with the
reason in the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import abort, redirect, request, url_for
from werkzeug.wrappers import Response

from api.console.blueprint import authorize_as, back_with_notice, bp, principal, render
from api.console.wallet_tokens import wallet_tokens_of
from api.context import tally
from api.database import request_connection, request_unit_of_work
from api.statement_csv import statement_csv
from ledger.errors import InvalidRequest
from ledger.holds import list_holds
from ledger.identifiers import check_user_id
from ledger.queries import user_wallets, wallet_history
from ledger.search import audit_of
from ledger.statements import open_statement, wallet_statement
from ledger.vocabulary import AccountStatus, HoldStatus
from ledger.wallets import freeze_wallet, unfreeze_wallet, update_wallet

PAGE_SIZE = 50
STATEMENT_PAGE_SIZE = 200


@bp.get("/wallets")
def find_wallet() -> Response | tuple[str, int]:
    user_id = request.args.get("user_id", "").strip()
    if user_id:
        return redirect(url_for("console.wallet", user_id=user_id), 303)
    return render("wallet_search.html")


def _user(user_id: str) -> str:
    try:
        check_user_id(user_id)
    except InvalidRequest as error:
        abort(404, error.message)
    return user_id


@bp.get("/wallets/<user_id:user_id>")
def wallet(user_id: str) -> tuple[str, int]:
    tenant_id = principal().tenant_id
    _user(user_id)
    with request_connection() as conn:
        wallets = user_wallets(conn, tenant_id, user_id)
        if not wallets:
            abort(404, f"user {user_id!r} has no wallet")
        codes = [w["asset_code"] for w in wallets]
        wanted = request.args.get("asset", "")
        asset: str = wanted if wanted in codes else codes[0]
        history = wallet_history(
            conn, tenant_id, user_id, asset, limit=PAGE_SIZE, cursor=request.args.get("cursor")
        )
        holds = list_holds(conn, tenant_id, user_id, asset, status=HoldStatus.HELD, limit=PAGE_SIZE)
        tokens = wallet_tokens_of(conn, user_id, codes)
        # The wallet's own actions, and those on the user's wallet tokens.
        audit: list[dict[str, Any]] = audit_of(conn, tenant_id, f"wallet:{user_id}")
        for code in codes:
            audit += audit_of(conn, tenant_id, f"wallet:{user_id}/{code}")
    return render(
        "wallet.html",
        user_id=user_id,
        wallets=wallets,
        asset=asset,
        history=history,
        holds=holds,
        tokens=tokens,
        audit=sorted(audit, key=lambda event: event["occurred_at"]),
    )


# What each action does (a wallet use case and its arguments), the API operation whose
# authorization it shares, and the notice shown after it.
Action = tuple[str, str, Callable[..., None], dict[str, Any], str]
ACTIONS: dict[str, Action] = {
    "freeze": ("wallets.Freeze", "POST", freeze_wallet, {}, "frozen"),
    "unfreeze": ("wallets.Unfreeze", "POST", unfreeze_wallet, {}, "unfrozen"),
    "close": ("wallets.Wallet", "PATCH", update_wallet, {"status": AccountStatus.CLOSED}, "closed"),
}


def _action(action: str) -> Action:
    if action not in ACTIONS:
        abort(404, f"no wallet action {action!r}")
    return ACTIONS[action]


@bp.get("/wallets/<user_id:user_id>/<asset_code>/<action>")
def confirm_wallet_action(user_id: str, asset_code: str, action: str) -> tuple[str, int]:
    endpoint, method, _, _, _ = _action(action)
    authorize_as(endpoint, method)
    _user(user_id)
    return render("wallet_confirm.html", user_id=user_id, asset_code=asset_code, action=action)


@bp.post("/wallets/<user_id:user_id>/<asset_code>/<action>")
def wallet_action(user_id: str, asset_code: str, action: str) -> Response:
    endpoint, method, change, changes, notice = _action(action)
    authorize_as(endpoint, method)
    _user(user_id)
    reason = request.form.get("reason", "").strip()
    if not reason:
        raise InvalidRequest("reason_required", "Say why: the reason goes in the audit trail.")
    if len(reason) > 500:
        raise InvalidRequest("reason_too_long", "A reason is at most 500 characters.")
    signed_in = principal()
    with request_unit_of_work() as work:
        change(
            work,
            signed_in.tenant_id,
            user_id,
            asset_code,
            actor=signed_in.actor,
            reason=reason,
            **changes,
        )
    return back_with_notice("console.wallet", notice, user_id=user_id, asset=asset_code)


def _moment(name: str, default: datetime | None = None) -> datetime | None:
    """A form's moment (`datetime-local` sends no offset: UTC), or `default` if blank."""
    value = request.args.get(name, "").strip()
    if not value:
        return default
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest("invalid_period", f"{name}: not a date and time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _statement_query(user_id: str) -> tuple[str, datetime, datetime | None]:
    _user(user_id)
    asset = request.args.get("asset", "")
    start = _moment("from")
    if not asset or start is None:
        raise InvalidRequest("invalid_period", "Choose an asset and a start (from).")
    return asset, start, _moment("to")


@bp.get("/wallets/<user_id:user_id>/statement")
def wallet_statement_page(user_id: str) -> tuple[str, int]:
    asset, start, end = _statement_query(user_id)
    with request_connection() as conn:
        statement = wallet_statement(
            conn,
            principal().tenant_id,
            user_id,
            asset,
            start=start,
            end=end,
            limit=STATEMENT_PAGE_SIZE,
            cursor=request.args.get("cursor"),
        )
    return render("statement.html", user_id=user_id, asset=asset, statement=statement)


@bp.get("/wallets/<user_id:user_id>/statement.csv")
def wallet_statement_csv(user_id: str) -> Response:
    asset, start, end = _statement_query(user_id)
    tenant_id = principal().tenant_id
    with request_connection() as conn:
        period = open_statement(conn, tenant_id, user_id, asset, start, end, pin=True)
    return statement_csv(tally().engine, tenant_id, period)
