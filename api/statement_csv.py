"""A wallet's statement as CSV, streamed: the header row, then the period's entries batch by
batch (ledger/statements.py `statement_batches`), in constant memory.

The server sends a streamed body chunk by chunk (api/server.py): a thread of the pool
produces one batch's chunk at a time and each batch reads in a short transaction of its own,
so a slow download holds neither a thread nor a database connection between chunks.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Response, request
from sqlalchemy import Engine

from api.respond import STREAMED
from api.time_schemas import CSV, CSV_COLUMNS
from ledger.statements import Period, statement_batches


def decimal(amount: int, places: int) -> str:
    """Minor units as an exact decimal string: 12345 at 2 places is '123.45'."""
    if not places:
        return str(amount)
    whole, fraction = divmod(abs(amount), 10**places)
    return f"{'-' if amount < 0 else ''}{whole}.{fraction:0{places}d}"


def csv_chunks(places: int, batches: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    """The header row, then one chunk of rows per batch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue().encode()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        for entry in batch:
            writer.writerow(
                (
                    entry["effective_at"],
                    entry["recorded_at"],
                    entry["transaction_id"],
                    entry["type"],
                    entry["reference_id"],
                    entry["amount"],
                    decimal(entry["amount"], places),
                    entry["running_balance"],
                    decimal(entry["running_balance"], places),
                )
            )
        yield buffer.getvalue().encode()


def statement_csv(engine: Engine, tenant_id: uuid.UUID, period: Period) -> Response:
    """The streamed CSV answer of a pinned statement period, as an attachment."""
    batches = statement_batches(engine, tenant_id, period)
    response = Response(csv_chunks(period.decimal_places, batches), mimetype=CSV)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{filename(period.user_id, period.asset_code)}"'
    )
    request.environ[STREAMED] = True
    return response


def filename(user_id: str, asset_code: str) -> str:
    """statement-<user>-<asset>.csv, the user id kept to characters safe in a header."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in user_id)
    return f"statement-{safe}-{asset_code}.csv"
