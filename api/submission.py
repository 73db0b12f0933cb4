"""The intake use case shared by every submission route: record, publish, optionally wait."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from flask import Response, url_for
from sqlalchemy.exc import DBAPIError

from api.auth import current_principal
from api.context import tally
from api.database import (
    release_request_connection,
    request_unit_of_work,
)
from api.respond import json_response
from ledger.intake import Result, accept_transactions, sole_submission
from ledger.queries import get_transaction
from ledger.transaction_request import TransactionRequest
from ledger.vocabulary import TERMINAL_STATUSES

log = logging.getLogger(__name__)


def request_from_body(type: str, body: dict[str, Any]) -> TransactionRequest:
    """The ledger request a validated JSON body describes."""
    return TransactionRequest(
        type=type,
        reference_id=body["reference_id"],
        user_id=body.get("user_id"),
        asset_code=body.get("asset_code"),
        amount=body.get("amount"),
        to_user_id=body.get("to_user_id"),
        original_transaction_id=body.get("original_transaction_id"),
        payment_method=body.get("payment_method"),
        bonus_type=body.get("bonus_type"),
        item_id=body.get("item_id"),
        reason=body.get("reason"),
        metadata=body.get("metadata") or {},
        expires_in=body.get("expires_in"),
        expires_at=body.get("expires_at"),
    )


def wait_for_outcome(tenant_id: uuid.UUID, view: dict[str, Any], wait: float) -> dict[str, Any]:
    """The transaction once it is final, or as it stands after `wait` seconds."""
    if wait <= 0 or view["status"] in TERMINAL_STATUSES:
        return view
    ctx = tally()
    transaction_id = uuid.UUID(view["id"])
    latest = view
    # A waiting request holds no pooled connection: each check borrows one briefly.
    release_request_connection()

    def is_final() -> bool:
        nonlocal latest
        with ctx.engine.connect() as conn:
            found = get_transaction(conn, tenant_id, transaction_id=transaction_id)
        if found is not None:
            latest = found
        return latest["status"] in TERMINAL_STATUSES

    try:
        ctx.waiter.wait_until(view["id"], min(wait, ctx.settings.max_wait_seconds), is_final)
    except DBAPIError:
        # The transaction is committed already: a 5xx now would tell the client it was not
        # accepted. Answer with what we last saw; the client can poll later.
        log.warning("database unavailable while waiting for %s", view["id"])
    return latest


def record(requests: Sequence[TransactionRequest]) -> list[Result]:
    """Record requests for the calling key's tenant through the one intake service."""
    ctx = tally()
    principal = current_principal()
    return accept_transactions(
        request_unit_of_work,
        principal.tenant_id,
        requests,
        admin=principal.is_admin,
        publish=ctx.publisher.publish,
        max_metadata_bytes=ctx.settings.max_metadata_bytes,
    )


def submit(request: TransactionRequest, wait: float) -> Response:
    """Record the request durably, publish it after the commit, answer 202 (200 on replay)."""
    submission = sole_submission(record([request]))
    view = wait_for_outcome(current_principal().tenant_id, submission.transaction, wait)
    headers = {"Location": url_for("transactions.Transaction", transaction_id=view["id"])}
    if submission.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(view, 200 if submission.replayed else 202, headers)
