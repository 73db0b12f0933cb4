"""marshmallow schemas of the webhook endpoints API (requests and the OpenAPI document)."""

from __future__ import annotations

from datetime import UTC
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.fields import cursor_field, storable_text
from ledger.vocabulary import WEBHOOK_TEST_EVENT, DeliveryStatus, EventType
from ledger.webhooks.endpoints import MAX_DESCRIPTION, MAX_OVERLAP_SECONDS
from ledger.webhooks.targets import MAX_URL_LENGTH

EVENT_TYPES = [str(t) for t in EventType]
# What ledger.webhooks.targets.parse_target takes, as far as a pattern can say: an http(s)
# scheme in any case, then no whitespace or control character (Python's `str.isspace`).
WEBHOOK_URL = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://"
    r"[^\u0000-\u0020\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$"
)
DELIVERY_STATUSES = [str(s) for s in DeliveryStatus]


def _url(**kwargs: Any) -> fields.String:
    return storable_text(
        max_length=MAX_URL_LENGTH,
        metadata={
            "pattern": WEBHOOK_URL,
            "format": "uri",
            "description": "http(s) URL that receives the events (public addresses only).",
        },
        **kwargs,
    )


def _event_types(**kwargs: Any) -> fields.List:
    return fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES)),
        validate=validate.Length(min=1),
        metadata={"description": f"Any of {', '.join(EVENT_TYPES)}; default all."},
        **kwargs,
    )


def _description(**kwargs: Any) -> fields.String:
    return storable_text(min_length=0, max_length=MAX_DESCRIPTION, allow_none=True, **kwargs)


class WebhookEndpointCreateSchema(Schema):
    url = _url(required=True)
    event_types = _event_types()
    description = _description()


class WebhookEndpointUpdateSchema(Schema):
    """Only the fields sent change."""

    class Meta:
        json_schema_rules: ClassVar[dict[str, Any]] = {
            "minProperties": 1
        }  # what `_not_empty` enforces

    url = _url()
    event_types = _event_types()
    description = _description()
    enabled = fields.Boolean()

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Send at least one of url, event_types, description, enabled.")


# Output schemas document what the views render: `required` marks what every answer carries.


class WebhookEndpointSchema(Schema):
    id = fields.UUID(required=True)
    url = fields.String(required=True)
    description = fields.String(required=True, allow_none=True)
    event_types = fields.List(fields.String(metadata={"enum": EVENT_TYPES}), required=True)
    enabled = fields.Boolean(required=True)
    disabled_reason = fields.String(required=True, allow_none=True)
    previous_secret_expires_at = fields.DateTime(
        required=True,
        allow_none=True,
        metadata={
            "description": "Until then deliveries carry a signature with the old secret too."
        },
    )
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class WebhookEndpointWithSecretSchema(WebhookEndpointSchema):
    secret = fields.String(
        required=True,
        metadata={"description": "The whsec_ signing secret; shown only at creation and rotation."},
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
    cursor = cursor_field(max_length=300)


class WebhookAttemptSchema(Schema):
    attempt = fields.Integer(required=True)
    attempted_at = fields.DateTime(required=True)
    status_code = fields.Integer(required=True, allow_none=True)
    latency_ms = fields.Integer(required=True)
    response_body = fields.String(
        required=True, allow_none=True, metadata={"description": "Truncated."}
    )
    error = fields.String(required=True, allow_none=True)


class WebhookDeliverySchema(Schema):
    id = fields.UUID(required=True)
    endpoint_id = fields.UUID(required=True)
    event_id = fields.UUID(
        required=True, allow_none=True, metadata={"description": "Null for test events."}
    )
    message_id = fields.String(
        required=True, metadata={"description": "The webhook-id header, stable."}
    )
    event_type = fields.String(required=True, metadata={"enum": [*EVENT_TYPES, WEBHOOK_TEST_EVENT]})
    status = fields.String(required=True, metadata={"enum": DELIVERY_STATUSES})
    attempt_count = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(
        required=True, allow_none=True, metadata={"description": "Set while pending."}
    )
    last_attempt_at = fields.DateTime(required=True, allow_none=True)
    last_status_code = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    delivered_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    attempts = fields.List(
        fields.Nested(WebhookAttemptSchema),
        required=True,
        metadata={"description": "Oldest first."},
    )


class WebhookDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(WebhookDeliverySchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "Null on the last page."}
    )


class RecoverSchema(Schema):
    """Deliveries of events from `since` (to `until`); a time without a zone is UTC."""

    since = fields.AwareDateTime(required=True, default_timezone=UTC)
    until = fields.AwareDateTime(default_timezone=UTC)


class RecoverResultSchema(Schema):
    redelivered = fields.Integer(
        required=True, metadata={"description": "Failed deliveries scheduled again."}
    )
