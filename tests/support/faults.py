"""Faults a test makes on purpose in the real database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text


@contextmanager
def refusing_credits(engine: Engine, user_id: str, amount: int) -> Iterator[None]:
    """While inside, the database refuses to credit `user_id` `amount` or more: a system
    fault (a constraint the ledger does not know of), not a business rule."""
    constraint = f"test_refuse_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"ALTER TABLE accounts ADD CONSTRAINT {constraint}"
                f" CHECK (owner <> '{user_id}' OR balance < {amount}) NOT VALID"
            )
        )
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE accounts DROP CONSTRAINT IF EXISTS {constraint}"))
