"""Every table of the database in one metadata: the ledger's (ledger/models.py) and the
webhooks' (ledger/webhooks/models.py), which registers its tables on the same Base."""

from __future__ import annotations

from ledger.models import Base
from ledger.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

__all__ = ["WebhookAttempt", "WebhookDelivery", "WebhookEndpoint", "metadata"]

metadata = Base.metadata
