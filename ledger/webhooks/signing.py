"""The webhook signer: Standard Webhooks headers over the exact body bytes sent.

`webhook-signature` is `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the
base64-decoded part of the `whsec_` secret; during a rotation's overlap it carries one
signature per live secret, separated by spaces, so receivers on either secret verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def generate_secret() -> str:
    """A new endpoint secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<signature>` of the body for this message id and Unix timestamp."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    message_id: str, secrets_in_use: Sequence[str], body: bytes, timestamp: int
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret still in use."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            sign(secret, message_id, timestamp, body) for secret in secrets_in_use
        ),
    }


def message_id(source_id: uuid.UUID) -> str:
    """The stable `webhook-id` of an event (or of a test delivery): the same on every retry."""
    return f"msg_{source_id.hex}"


def event_body(
    event_type: str, occurred_at: datetime, data: Any, cursor: str | None = None
) -> bytes:
    """The JSON body `{type, timestamp, data}` and, for an event of the feed, its `cursor`
    there; the same bytes on every attempt."""
    timestamp = occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    document: dict[str, Any] = {"type": event_type, "timestamp": timestamp, "data": data}
    if cursor is not None:
        document["cursor"] = cursor
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
