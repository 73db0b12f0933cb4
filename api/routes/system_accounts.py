"""System accounts of the caller's tenant: define one, list them with balances, read a
journal."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView

from api.auth import current_principal
from api.blueprint import Blueprint
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from api.schemas import HistoryQuerySchema, HistorySchema
from api.system_account_schemas import (
    SystemAccountBalanceSchema,
    SystemAccountCreateSchema,
    SystemAccountSchema,
)
from api.time_schemas import SystemAccountsAsOfQuerySchema
from ledger.system_accounts import (
    define_system_account,
    list_system_accounts,
    system_account_history,
)
from ledger.vocabulary import Scope

blp = Blueprint(
    "system_accounts",
    __name__,
    url_prefix="/api/v1/system-accounts",
    description="The built-in system accounts and those the tenant defines, per asset.",
)


@blp.route("")
class SystemAccounts(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.arguments(SystemAccountCreateSchema)
    @blp.response(201, SystemAccountSchema)
    @blp.problem(409, "system_account_exists")
    def post(self, body: dict[str, Any]) -> Response:
        """Define a system account, with its account in every asset (admin keys only)."""
        principal = current_principal()
        with request_unit_of_work() as work:
            defined = define_system_account(
                work,
                principal.tenant_id,
                body["name"],
                body.get("description"),
                actor=principal.actor,
            )
        return json_response(defined, 201)

    @blp.arguments(SystemAccountsAsOfQuerySchema, location="query")
    @blp.response(200, SystemAccountBalanceSchema(many=True))
    @blp.problem(404, "asset_not_found")
    def get(self, query: dict[str, Any]) -> Response:
        """Every system account with its balance, by asset then name; with `as_of` (and
        `known_at`), the balances as of a moment."""
        with request_connection() as conn:
            listed = list_system_accounts(
                conn,
                current_principal().tenant_id,
                query.get("asset_code"),
                as_of=query.get("as_of"),
                known_at=query.get("known_at"),
            )
        return json_response(listed)


@blp.route("/<system_account:name>/transactions")
class History(MethodView):
    @blp.arguments(HistoryQuerySchema, location="query")
    @blp.response(200, HistorySchema)
    @blp.problem(400, "invalid_cursor")
    @blp.problem(404, "system_account_not_found", "asset_not_found")
    @blp.problem(422, "invalid_system_account_name")
    def get(self, query: dict[str, Any], name: str) -> Response:
        """A system account's journal in one asset, newest first; follow `next_cursor`."""
        with request_connection() as conn:
            page = system_account_history(
                conn,
                current_principal().tenant_id,
                name,
                query["asset_code"],
                limit=query["limit"],
                cursor=query.get("cursor"),
            )
        return json_response(page)
