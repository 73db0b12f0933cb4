"""API keys (admin keys only, as in the API): create one of a scope, shown once; list with
prefix and last use; revoke."""

from __future__ import annotations

import uuid

from flask import abort, request
from werkzeug.wrappers import Response

from api.console.blueprint import authorize_as, back_with_notice, bp, principal, render
from api.database import request_connection, request_unit_of_work
from ledger.keys import issue_api_key, list_api_keys, revoke_api_key
from ledger.vocabulary import Scope


def _keys_page(status: int = 200, new_key: dict[str, str] | None = None) -> tuple[str, int]:
    with request_connection() as conn:
        keys = list_api_keys(conn, principal().tenant_id)
    return render("keys.html", status, keys=keys, scopes=list(Scope), new_key=new_key)


@bp.get("/keys")
def keys() -> tuple[str, int]:
    authorize_as("keys.ApiKeys", "GET")
    return _keys_page()


@bp.post("/keys")
def create_key() -> tuple[str, int]:
    authorize_as("keys.ApiKeys", "POST")
    signed_in = principal()
    with request_unit_of_work() as work:
        issued = issue_api_key(
            work, signed_in.tenant_id, request.form.get("scope", ""), actor=signed_in.actor
        )
    return _keys_page(201, new_key=issued)


@bp.post("/keys/<key_id>/revoke")
def revoke(key_id: str) -> Response:
    authorize_as("keys.ApiKey", "DELETE")
    try:
        key = uuid.UUID(key_id)
    except ValueError:
        abort(404, f"no key {key_id}")
    signed_in = principal()
    with request_unit_of_work() as work:
        revoke_api_key(work, signed_in.tenant_id, key, actor=signed_in.actor)
    return back_with_notice("console.keys", "revoked")
