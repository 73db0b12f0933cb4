"""The event feed's query and page (api/routes/events.py)."""

from __future__ import annotations

import re

from marshmallow import Schema, fields, validate

from api.fields import cursor_field, user_id_field
from ledger.feed import MAX_FEED_PAGE
from ledger.vocabulary import EventType

_TYPE = "|".join(re.escape(str(event_type)) for event_type in EventType)
TYPES = re.compile(f"^(?:{_TYPE})(?:,(?:{_TYPE}))*$")


class EventFeedQuerySchema(Schema):
    after = cursor_field(max_length=100)
    limit = fields.Integer(validate=validate.Range(min=1, max=MAX_FEED_PAGE), load_default=100)
    user_id = user_id_field(
        metadata={"description": "Only the events of transactions that moved this user's wallet."}
    )
    types = fields.String(
        validate=validate.Regexp(TYPES, error="Not a comma-separated list of event types."),
        metadata={
            "pattern": TYPES.pattern,
            "description": "Only these event types, comma-separated: "
            + ", ".join(f"`{event_type}`" for event_type in EventType)
            + ".",
        },
    )


class FeedEventSchema(Schema):
    id = fields.UUID(required=True)
    cursor = fields.String(
        required=True, metadata={"description": "This event's place in the feed, as `after`."}
    )
    type = fields.String(required=True, metadata={"enum": list(EventType)})
    occurred_at = fields.DateTime(required=True)
    data = fields.Dict(
        required=True, metadata={"description": "The transaction as it was when it happened."}
    )


class EventFeedSchema(Schema):
    events = fields.List(
        fields.Nested(FeedEventSchema), required=True, metadata={"description": "Oldest first."}
    )
    next_cursor = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "The last event's cursor; with no events, `after` as given (null"
            " when none was): poll again with it."
        },
    )
