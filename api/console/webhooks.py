"""Webhook endpoints: health, deliveries with filters, and the operator's actions (test
event, recover since, redeliver one, rotate the secret, enable or disable)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import abort, request
from werkzeug.wrappers import Response

from api.console.blueprint import (
    authorize_as,
    back_with_notice,
    bp,
    principal,
    render,
)
from api.context import tally
from api.database import request_connection, request_unit_of_work
from api.guard import spend_manual_webhook_budget
from ledger.errors import InvalidCursor, InvalidRequest
from ledger.vocabulary import DeliveryStatus
from ledger.webhooks import deliveries, endpoints

PAGE_SIZE = 50


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        abort(404, f"no {what} {raw}")


@bp.get("/webhooks")
def webhook_endpoints() -> tuple[str, int]:
    tenant_id = principal().tenant_id
    with request_connection() as conn:
        listed = endpoints.list_endpoints(conn, tenant_id)
        health = deliveries.endpoint_health(conn, tenant_id)
    return render("webhooks.html", endpoints=listed, health=health)


def _endpoint_page(endpoint_id: str, status: int = 200, **extra: Any) -> tuple[str, int]:
    tenant_id = principal().tenant_id
    key = _uuid(endpoint_id, "webhook endpoint")
    wanted = request.args.get("status") or None
    if wanted not in (None, *DeliveryStatus):
        wanted = None
    errors: list[str] = []
    with request_connection() as conn:
        endpoint = endpoints.get_endpoint(conn, tenant_id, key)
        health = deliveries.endpoint_health(conn, tenant_id, endpoint_id=key).get(str(key), {})
        try:
            page = deliveries.list_deliveries(
                conn,
                tenant_id,
                key,
                status=wanted,
                limit=PAGE_SIZE,
                cursor=request.args.get("cursor") or None,
            )
        except InvalidCursor as error:
            errors.append(error.message)
            page = {"items": [], "next_cursor": None}
    return render(
        "webhook_endpoint.html",
        400 if errors else status,
        endpoint=endpoint,
        health=health,
        page=page,
        wanted=wanted,
        statuses=list(DeliveryStatus),
        errors=errors,
        **extra,
    )


@bp.get("/webhooks/<endpoint_id>")
def webhook_endpoint(endpoint_id: str) -> tuple[str, int]:
    return _endpoint_page(endpoint_id)


@bp.post("/webhooks/<endpoint_id>/test")
def send_test(endpoint_id: str) -> Response:
    authorize_as("webhooks.TestEvent", "POST")
    spend_manual_webhook_budget(principal())
    with request_unit_of_work() as work:
        deliveries.send_test_event(
            work, principal().tenant_id, _uuid(endpoint_id, "webhook endpoint")
        )
    return back_with_notice("console.webhook_endpoint", "test-sent", endpoint_id=endpoint_id)


@bp.post("/webhooks/<endpoint_id>/recover")
def recover(endpoint_id: str) -> tuple[str, int]:
    authorize_as("webhooks.Recover", "POST")
    raw = request.form.get("since", "").strip()
    try:
        since = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(
            "invalid_since", f"since: {raw!r} is not a date and time (YYYY-MM-DDTHH:MM)"
        ) from None
    since = since if since.tzinfo else since.replace(tzinfo=UTC)
    spend_manual_webhook_budget(principal())
    with request_unit_of_work() as work:
        count = deliveries.recover_failed(
            work, principal().tenant_id, _uuid(endpoint_id, "webhook endpoint"), since
        )
    return _endpoint_page(endpoint_id, recovered=count)


@bp.post("/webhooks/<endpoint_id>/deliveries/<delivery_id>/redeliver")
def redeliver(endpoint_id: str, delivery_id: str) -> Response:
    authorize_as("webhooks.Retry", "POST")
    spend_manual_webhook_budget(principal())
    with request_unit_of_work() as work:
        deliveries.redeliver(
            work,
            principal().tenant_id,
            _uuid(endpoint_id, "webhook endpoint"),
            _uuid(delivery_id, "delivery"),
        )
    return back_with_notice("console.webhook_endpoint", "redelivered", endpoint_id=endpoint_id)


@bp.post("/webhooks/<endpoint_id>/rotate-secret")
def rotate(endpoint_id: str) -> tuple[str, int]:
    authorize_as("webhooks.RotateSecret", "POST")
    with request_unit_of_work() as work:
        rotated = endpoints.rotate_secret(
            work,
            principal().tenant_id,
            _uuid(endpoint_id, "webhook endpoint"),
            overlap_seconds=tally().settings.webhook_secret_overlap_seconds,
            box=tally().secret_box,
            actor=principal().actor,
        )
    # Shown this once, in this answer (never stored in clear, never in a URL).
    return _endpoint_page(endpoint_id, new_secret=rotated["secret"])


def _set_enabled(endpoint_id: str, enabled: bool) -> Response:
    authorize_as("webhooks.WebhookEndpoint", "PATCH")
    with request_unit_of_work() as work:
        endpoints.update_endpoint(
            work,
            principal().tenant_id,
            _uuid(endpoint_id, "webhook endpoint"),
            {"enabled": enabled},
            allow_private=tally().settings.webhook_allow_private_targets,
            actor=principal().actor,
        )
    notice = "enabled" if enabled else "disabled"
    return back_with_notice("console.webhook_endpoint", notice, endpoint_id=endpoint_id)


@bp.post("/webhooks/<endpoint_id>/enable")
def enable(endpoint_id: str) -> Response:
    return _set_enabled(endpoint_id, True)


@bp.post("/webhooks/<endpoint_id>/disable")
def disable(endpoint_id: str) -> Response:
    return _set_enabled(endpoint_id, False)
