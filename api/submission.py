"""What every submission route shares: accept through the intake use case, answer, and
optionally wait for the outcome (`?wait=`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from flask import Response, request, url_for
from sqlalchemy.exc import DBAPIError

from api.auth import current_principal
from api.context import tally
from api.database import release_request_connection, request_unit_of_work
from api.long_poll import ASYNC_LONG_POLL, LONG_POLL, LongPoll
from api.respond import json_response, render_json, wants_string_amounts
from api.wallet_token_auth import current_wallet_claims, token_refused
from ledger.db import tenant_scope
from ledger.intake import Result, Submission, accept_transactions, sole_submission
from ledger.queries import get_transaction
from ledger.transaction_request import TransactionRequest
from ledger.vocabulary import TERMINAL_STATUSES
from ledger.wallet_tokens import WalletClaims, WalletTokenRefused, accept_with_wallet_token

log = logging.getLogger(__name__)


# The request fields a body may carry beside `reference_id` and `metadata`, each optional.
BODY_FIELDS = tuple(
    f.name for f in fields(TransactionRequest) if f.name not in ("type", "reference_id", "metadata")
)


def request_from_body(type: str, body: dict[str, Any]) -> TransactionRequest:
    """The ledger request a validated JSON body describes."""
    return TransactionRequest(
        type=type,
        reference_id=body["reference_id"],
        metadata=body.get("metadata") or {},
        **{name: body.get(name) for name in BODY_FIELDS},
    )


def answer_after_wait(
    tenant_id: uuid.UUID,
    view: dict[str, Any],
    wait: float,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The transaction's answer: at once, or with `wait` once it is final or `wait` seconds
    have passed. Past the long-poll bound (per process, per tenant) it answers at once."""
    if wait <= 0 or view["status"] in TERMINAL_STATUSES:
        return json_response(view, status, headers)
    ctx = tally()
    release = ctx.waiter.admit(tenant_id)
    if release is None:
        return json_response(view, status, headers)
    transaction_id = uuid.UUID(view["id"])
    timeout = min(wait, ctx.settings.max_wait_seconds)
    latest = view
    # A waiting request holds no pooled connection: each check borrows one briefly.
    release_request_connection()

    def is_final() -> bool:
        nonlocal latest
        try:
            # Run from the server's event loop too, outside the request: name the tenant.
            with tenant_scope(tenant_id), ctx.engine.connect() as conn:
                found = get_transaction(conn, tenant_id, transaction_id=transaction_id)
        except DBAPIError:
            # The transaction is committed already: a 5xx now would tell the client it was
            # not accepted. Answer with what we last saw; the client can poll later.
            log.warning("database unavailable while waiting for %s", transaction_id)
            return True
        if found is not None:
            latest = found
        return latest["status"] in TERMINAL_STATUSES

    if request.environ.get(ASYNC_LONG_POLL):
        # Parked on the server's event loop: no thread waits (api/server.py), and no
        # request to ask how amounts are wanted when it answers.
        string_amounts = wants_string_amounts()

        def render() -> tuple[bytes, bool]:
            final = is_final()
            return render_json(latest, string_amounts=string_amounts), final

        request.environ[LONG_POLL] = LongPoll(view["id"], timeout, render, release)
        return json_response(view, status, headers)
    try:
        ctx.waiter.wait_until(view["id"], timeout, is_final)
    finally:
        release()
    return json_response(latest, status, headers)


def accept(requests: Sequence[TransactionRequest]) -> list[Result]:
    """Accept requests for the calling key's tenant through the one intake use case, in this
    request's unit of work."""
    principal = current_principal()
    with request_unit_of_work() as work:
        return accept_transactions(
            work,
            principal.tenant_id,
            requests,
            admin=principal.is_admin,
            max_metadata_bytes=tally().settings.max_metadata_bytes,
            max_backdate_seconds=tally().settings.max_backdate_seconds,
            # The key may come from the cache: the insert itself confirms it is still live.
            key_id=principal.key_id,
        )


def accept_for_wallet(request: TransactionRequest, claims: WalletClaims) -> Submission:
    """Accept one request of a wallet token (ledger/wallet_tokens.py) in this request's
    unit of work; 401 `token_revoked` when the token was revoked since it was
    authenticated (nothing is recorded)."""
    settings = tally().settings
    try:
        with request_unit_of_work() as work:
            return accept_with_wallet_token(
                work,
                claims,
                request,
                max_metadata_bytes=settings.max_metadata_bytes,
                max_backdate_seconds=settings.max_backdate_seconds,
            )
    except WalletTokenRefused as refused:
        raise token_refused(refused) from None


def submit(request: TransactionRequest, wait: float) -> Response:
    """Record the request durably (with concurrent ones of the same key, api/combiner.py),
    publish it after the commit, answer 202 (200 on replay)."""
    principal = current_principal()
    claims = current_wallet_claims()
    if claims is not None:
        submission = accept_for_wallet(request, claims)
    else:
        result = tally().combiner.accept((principal.tenant_id, principal.key_id), request, accept)
        submission = sole_submission([result])
    view = submission.transaction
    headers = {"Location": url_for("transactions.Transaction", transaction_id=view["id"])}
    if submission.replayed:
        headers["Idempotent-Replayed"] = "true"
    status = 200 if submission.replayed else 202
    return answer_after_wait(principal.tenant_id, view, wait, status, headers)
