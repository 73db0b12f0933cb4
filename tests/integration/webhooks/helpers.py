"""Helpers for webhook integration tests."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine

from ledger.db import unit_of_work
from ledger.webhooks.endpoints import create_endpoint
from tests.conftest import secret_box


def register(
    engine: Engine, tenant_id: uuid.UUID, url: str, event_types: list[str] | None = None
) -> dict[str, object]:
    """An endpoint for the tenant, with its secret."""
    with unit_of_work(engine) as work:
        return create_endpoint(
            work, tenant_id, box=secret_box(), url=url, event_types=event_types, allow_private=True
        )
