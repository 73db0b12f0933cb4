"""Wallets: the seed-compatible submission routes, balance, history, freeze and limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema

from api import contract
from api.admin_schemas import WalletActionSchema, WalletChangeSchema
from api.auth import current_principal
from api.blueprint import Blueprint
from api.context import tally
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from api.schemas import (
    BalanceSchema,
    HistoryQuerySchema,
    HistorySchema,
    HoldPageSchema,
    HoldsQuerySchema,
    TransactionOutSchema,
    WaitQuerySchema,
)
from api.statement_csv import statement_csv
from api.submission import request_from_body, submit
from api.time_schemas import (
    CSV,
    BalanceAsOfQuerySchema,
    BalanceAsOfSchema,
    StatementQuerySchema,
    StatementSchema,
    statement_content,
)
from api.transaction_schemas import BonusSchema, SpendSchema, TopupSchema
from ledger.holds import list_holds
from ledger.identifiers import check_user_id
from ledger.queries import get_balance, get_balance_as_of, wallet_history
from ledger.statements import open_statement, wallet_statement
from ledger.vocabulary import Scope, TransactionType
from ledger.wallets import freeze_wallet, unfreeze_wallet, update_wallet

blp = Blueprint(
    "wallets",
    __name__,
    url_prefix="/api/v1/wallets",
    description="Wallet balances and history, and the seed-compatible submission routes.",
)


def _seed_submission(
    kind: str, schema: type[Schema], summary: str, problems: tuple[str, ...] = ()
) -> None:
    """`POST /wallets/<kind>`: a seed-compatible route submitting one type of transaction;
    `problems`, the 422 codes of its own fields beyond what every submission answers."""

    class Submission(MethodView):
        @blp.arguments(schema)
        @blp.arguments(WaitQuerySchema, location="query")
        @blp.submission_responses(TransactionOutSchema)
        def post(self, body: dict[str, Any], query: dict[str, Any]) -> Response:
            return submit(request_from_body(kind, body), query["wait"])

        post.__doc__ = summary
        if problems:
            post = blp.problem(422, *problems)(post)
        if kind == TransactionType.SPEND:
            for status, codes in contract.WALLET_TOKEN_SUBMISSION.items():
                post = blp.problem(status, *codes)(post)

    Submission.__name__ = Submission.__qualname__ = kind.capitalize()
    blp.route(f"/{kind}")(Submission)


_seed_submission(
    TransactionType.TOPUP,
    TopupSchema,
    "Top up a wallet (money entering from `@topup`); creates the wallet on first use.",
)
_seed_submission(TransactionType.BONUS, BonusSchema, "Grant a bonus from `@bonus` to a wallet.")
_seed_submission(
    TransactionType.SPEND,
    SpendSchema,
    "Spend from a wallet to `@revenue` (or to the legs of its `splits`), if its available funds"
    " cover the amount.",
    contract.SPLIT_PROBLEMS,
)


@blp.route("/<user_id:user_id>/balance")
class Balance(MethodView):
    @blp.arguments(BalanceAsOfQuerySchema, location="query")
    @blp.response(200, BalanceAsOfSchema)
    @blp.problem(404, "wallet_not_found")
    @blp.problem(422, "invalid_user_id")
    def get(self, query: dict[str, Any], user_id: str) -> Response:
        """A wallet's balance, pending holds, available funds and version; with `as_of`
        (and `known_at`), its balance as of a moment."""
        check_user_id(user_id)
        tenant_id, asset_code = current_principal().tenant_id, query["asset_code"]
        with request_connection() as conn:
            if query.get("as_of") is not None:
                balance = get_balance_as_of(
                    conn, tenant_id, user_id, asset_code, query["as_of"], query.get("known_at")
                )
            else:
                balance = {
                    **get_balance(conn, tenant_id, user_id, asset_code),
                    "as_of": None,
                    "known_at": None,
                }
        return json_response(balance)


@blp.route("/<user_id:user_id>/statement")
class Statement(MethodView):
    @blp.arguments(StatementQuerySchema, location="query")
    @blp.response(200, StatementSchema)
    @blp.doc(responses={"200": {"content": statement_content()}})
    @blp.problem(400, "invalid_cursor")
    @blp.problem(404, "wallet_not_found")
    @blp.problem(422, "invalid_user_id", "invalid_period")
    def get(self, query: dict[str, Any], user_id: str) -> Response:
        """A wallet's statement over `(from, to]`: opening and closing balances, totals per
        type, entries in effective order with running balances (keyset pages); with
        `Accept: text/csv`, the whole period as CSV."""
        check_user_id(user_id)
        tenant_id, asset_code = current_principal().tenant_id, query["asset_code"]
        if wants_csv():
            with request_connection() as conn:
                period = open_statement(
                    conn, tenant_id, user_id, asset_code, query["start"], query.get("end"), pin=True
                )
            return statement_csv(tally().engine, tenant_id, period)
        with request_connection() as conn:
            statement = wallet_statement(
                conn,
                tenant_id,
                user_id,
                asset_code,
                start=query["start"],
                end=query.get("end"),
                limit=query["limit"],
                cursor=query.get("cursor"),
            )
        return json_response(statement)


def wants_csv() -> bool:
    """Whether the client prefers CSV to JSON (`Accept: text/csv`)."""
    best = request.accept_mimetypes.best_match(["application/json", CSV])
    return best == CSV


def _wallet_page(
    lister: Callable[..., dict[str, Any]], user_id: str, query: dict[str, Any], **filters: Any
) -> Response:
    """One keyset page of a wallet's journal or holds."""
    check_user_id(user_id)
    with request_connection() as conn:
        page = lister(
            conn,
            current_principal().tenant_id,
            user_id,
            query["asset_code"],
            limit=query["limit"],
            cursor=query.get("cursor"),
            **filters,
        )
    return json_response(page)


@blp.route("/<user_id:user_id>/transactions")
class History(MethodView):
    @blp.arguments(HistoryQuerySchema, location="query")
    @blp.response(200, HistorySchema)
    @blp.problem(400, "invalid_cursor")
    @blp.problem(404, "wallet_not_found")
    @blp.problem(422, "invalid_user_id")
    def get(self, query: dict[str, Any], user_id: str) -> Response:
        """A wallet's journal, newest first; follow `next_cursor` for older entries."""
        return _wallet_page(wallet_history, user_id, query)


@blp.route("/<user_id:user_id>/holds")
class Holds(MethodView):
    @blp.arguments(HoldsQuerySchema, location="query")
    @blp.response(200, HoldPageSchema)
    @blp.problem(400, "invalid_cursor")
    @blp.problem(404, "wallet_not_found")
    @blp.problem(422, "invalid_user_id")
    def get(self, query: dict[str, Any], user_id: str) -> Response:
        """A wallet's holds (each as its hold transaction), newest first; filter by `status`."""
        return _wallet_page(list_holds, user_id, query, status=query.get("status"))


def _change_wallet(
    change: Callable[..., None], user_id: str, body: dict[str, Any], **changes: Any
) -> Response:
    """Run a wallet use case (`change`) on the wallet; its balance as it is now."""
    check_user_id(user_id)
    principal = current_principal()
    asset_code = body["asset_code"]
    with request_unit_of_work() as work:
        change(
            work,
            principal.tenant_id,
            user_id,
            asset_code,
            actor=principal.actor,
            reason=body.get("reason"),
            **changes,
        )
        balance = get_balance(work.connection, principal.tenant_id, user_id, asset_code)
    return json_response(balance)


@blp.route("/<user_id:user_id>/freeze")
class Freeze(MethodView):
    @blp.arguments(WalletActionSchema)
    @blp.response(200, BalanceSchema)
    @blp.problem(404, "wallet_not_found")
    @blp.problem(409, "wallet_closed")
    @blp.problem(422, "invalid_user_id")
    def post(self, body: dict[str, Any], user_id: str) -> Response:
        """Freeze a wallet: debits are rejected `wallet_frozen`, credits still land."""
        return _change_wallet(freeze_wallet, user_id, body)


@blp.route("/<user_id:user_id>/unfreeze")
class Unfreeze(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(WalletActionSchema)
    @blp.response(200, BalanceSchema)
    @blp.problem(404, "wallet_not_found")
    @blp.problem(409, "wallet_closed")
    @blp.problem(422, "invalid_user_id")
    def post(self, body: dict[str, Any], user_id: str) -> Response:
        """Make a frozen wallet active again (admin keys only: a freeze is a safety stop)."""
        return _change_wallet(unfreeze_wallet, user_id, body)


@blp.route("/<user_id:user_id>")
class Wallet(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(WalletChangeSchema)
    @blp.response(200, BalanceSchema)
    @blp.problem(404, "wallet_not_found")
    @blp.problem(422, "invalid_user_id", "credit_limit_below_balance")
    def patch(self, body: dict[str, Any], user_id: str) -> Response:
        """Set a wallet's status or credit limit (admin keys only)."""
        return _change_wallet(
            update_wallet,
            user_id,
            body,
            status=body.get("status"),
            credit_limit=body.get("credit_limit"),
        )
