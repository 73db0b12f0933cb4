"""Transactions: submit any type, read status by id or reference, long-poll with ?wait=."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response
from flask.views import MethodView

from api import contract
from api.auth import current_principal
from api.blueprint import Blueprint
from api.bulk import submit_batch
from api.database import request_connection, request_unit_of_work
from api.respond import json_response
from api.schemas import (
    ReferenceQuerySchema,
    TransactionBatchResultSchema,
    TransactionOutSchema,
    WaitQuerySchema,
)
from api.submission import answer_after_wait, request_from_body, submit
from api.transaction_schemas import TransactionBatchSchema, TransactionSchema
from api.wallet_token_auth import check_wallet_asset
from ledger.errors import TransactionNotFound
from ledger.queries import get_transaction
from ledger.queue import requeue_transaction
from ledger.vocabulary import Scope

blp = Blueprint(
    "transactions",
    __name__,
    url_prefix="/api/v1/transactions",
    description="Submit transactions and follow them to their outcome.",
)


# Schema instances, not classes: webargs would build (and deep-copy) a schema per request.
@blp.route("")
class Transactions(MethodView):
    @blp.arguments(TransactionSchema())
    @blp.arguments(WaitQuerySchema(), location="query")
    @blp.submission_responses(TransactionOutSchema)
    @blp.problem(403, "admin_key_required")
    @blp.problem(
        422, "missing_field", "unexpected_field", "same_wallet", "invalid_user_id", "invalid_expiry"
    )
    @blp.problem(422, *contract.MONEY_MOVE_PROBLEMS)
    @blp.problem(404, *contract.WALLET_TOKEN_SUBMISSION[404])
    @blp.problem(422, *contract.WALLET_TOKEN_SUBMISSION[422])
    def post(self, body: dict[str, Any], query: dict[str, Any]) -> Response:
        """Submit a transaction of any type."""
        return submit(request_from_body(body["type"], body), query["wait"])

    @blp.arguments(ReferenceQuerySchema, location="query")
    @blp.response(200, TransactionOutSchema)
    @blp.problem(404, "transaction_not_found")
    def get(self, query: dict[str, Any]) -> Response:
        """Find a transaction by its reference id."""
        with request_connection() as conn:
            view = get_transaction(
                conn, current_principal().tenant_id, reference_id=query["reference_id"]
            )
        if view is None:
            raise TransactionNotFound(f"no transaction with reference_id {query['reference_id']!r}")
        return json_response(view)


@blp.route("/batch")
class TransactionBatch(MethodView):
    @blp.submits_batch
    @blp.arguments(TransactionBatchSchema())
    @blp.response(200, TransactionBatchResultSchema)
    @blp.problem(413, "batch_too_large")
    def post(self, body: dict[str, Any]) -> Response:
        """Submit up to 1,000 transactions in one commit; each item is answered on its own."""
        return submit_batch(body["transactions"])


@blp.route("/<uuid:transaction_id>")
class Transaction(MethodView):
    @blp.arguments(WaitQuerySchema, location="query")
    @blp.response(200, TransactionOutSchema)
    @blp.problem(404, "transaction_not_found")
    def get(self, query: dict[str, Any], transaction_id: uuid.UUID) -> Response:
        """A transaction's status and outcome; `wait` holds the answer until it is final."""
        tenant_id = current_principal().tenant_id
        with request_connection() as conn:
            view = get_transaction(conn, tenant_id, transaction_id=transaction_id)
        if view is None:
            raise TransactionNotFound(f"no transaction {transaction_id}")
        check_wallet_asset(view["asset_code"])
        return answer_after_wait(tenant_id, view, query["wait"])


@blp.route("/<uuid:transaction_id>/requeue")
class Requeue(MethodView):
    @blp.requires(Scope.ADMIN)
    @blp.response(202, TransactionOutSchema)
    @blp.problem(404, "transaction_not_found")
    @blp.problem(409, "transaction_not_failed")
    def post(self, transaction_id: uuid.UUID) -> Response:
        """Put a `failed` transaction back in the queue (admin keys only; audited)."""
        principal = current_principal()
        with request_unit_of_work() as work:
            view = requeue_transaction(
                work,
                principal.tenant_id,
                transaction_id,
                actor=principal.actor,
            )
        return json_response(view, 202)
