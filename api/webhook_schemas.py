"""marshmallow schemas of the webhook endpoints API (requests and the OpenAPI document)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.schemas import storable
from ledger.models import DELIVERY_STATUSES, WEBHOOK_EVENT_TYPES
from ledger.webhooks.endpoints import MAX_DESCRIPTION, MAX_OVERLAP_SECONDS
from ledger.webhooks.targets import MAX_URL_LENGTH


def _url(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=[validate.Length(min=1, max=MAX_URL_LENGTH), storable],
        metadata={"description": "http(s) URL that receives the events (public addresses only)."},
        **kwargs,
    )


def _event_types(**kwargs: Any) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(WEBHOOK_EVENT_TYPES)),
        validate=validate.Length(min=1),
        metadata={"description": f"Any of {', '.join(WEBHOOK_EVENT_TYPES)}; default all."},
        **kwargs,
    )


def _description(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=[validate.Length(max=MAX_DESCRIPTION), storable], allow_none=True, **kwargs
    )


class WebhookEndpointCreateSchema(Schema):
    url = _url(required=True)
    event_types = _event_types()
    description = _description()


class WebhookEndpointUpdateSchema(Schema):
    """Only the fields sent change."""

    url = _url()
    event_types = _event_types()
    description = _description()
    enabled = fields.Boolean()

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Send at least one of url, event_types, description, enabled.")


class WebhookEndpointSchema(Schema):
    id = fields.UUID()
    url = fields.String()
    description = fields.String(allow_none=True)
    event_types = fields.List(fields.String())
    enabled = fields.Boolean()
    disabled_reason = fields.String(allow_none=True)
    previous_secret_expires_at = fields.DateTime(
        allow_none=True,
        metadata={
            "description": "Until then deliveries carry a signature with the old secret too."
        },
    )
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class WebhookEndpointWithSecretSchema(WebhookEndpointSchema):
    secret = fields.String(
        metadata={"description": "The whsec_ signing secret; shown only at creation and rotation."}
    )


class RotateSecretSchema(Schema):
    overlap_seconds = fields.Integer(
        strict=True,
        validate=validate.Range(min=0, max=MAX_OVERLAP_SECONDS),
        metadata={"description": "How long the old secret keeps signing too (default: 1 day)."},
    )


class DeliveryQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    limit = fields.Integer(validate=validate.Range(min=1, max=200), load_default=50)
    cursor = fields.String(validate=validate.Length(max=300))


class WebhookAttemptSchema(Schema):
    attempt = fields.Integer()
    attempted_at = fields.DateTime()
    status_code = fields.Integer(allow_none=True)
    latency_ms = fields.Integer()
    response_body = fields.String(allow_none=True, metadata={"description": "Truncated."})
    error = fields.String(allow_none=True)


class WebhookDeliverySchema(Schema):
    id = fields.UUID()
    endpoint_id = fields.UUID()
    event_id = fields.UUID(allow_none=True)
    message_id = fields.String(metadata={"description": "The webhook-id header, stable."})
    event_type = fields.String()
    status = fields.String(metadata={"enum": list(DELIVERY_STATUSES)})
    attempt_count = fields.Integer()
    next_attempt_at = fields.DateTime(allow_none=True)
    last_attempt_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    attempts = fields.List(fields.Nested(WebhookAttemptSchema))


class WebhookDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(WebhookDeliverySchema))
    next_cursor = fields.String(allow_none=True)


class RecoverSchema(Schema):
    """Deliveries of events from `since` (to `until`); a time without a zone is UTC."""

    since = fields.AwareDateTime(required=True, default_timezone=UTC)
    until = fields.AwareDateTime(default_timezone=UTC)


class RecoverResultSchema(Schema):
    redelivered = fields.Integer()
