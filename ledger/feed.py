"""The event feed: a tenant's events in one total order that a reader can follow without a gap.

Events are ordered by (xid, position): the id of the database transaction that wrote them,
then their insert order. A read returns only events whose xid is below the xmin of its own
snapshot. Every transaction below that xmin has ended, so those events are all visible and
no more will ever appear among them; an event that becomes visible later belongs to a
transaction at or above that xmin, so it sorts after every cursor this read hands out. A
reader that continues from its last cursor therefore sees each event exactly once, however
the writers' commits interleave (docs/design.md, "The event feed").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from ledger.pagination import decode_cursor, encode_cursor
from ledger.views import iso

MAX_FEED_PAGE = 1000
# Both halves of a position are unsigned 64-bit: xid8 is, and position is a positive bigint.
MAX_XID = 2**64 - 1
MAX_POSITION = 2**63 - 1
START = (0, 0)

# Each qual on `events` is leakproof (xid8 and bigint comparisons are), so under row-level
# security the (tenant_id, xid, position) index still bounds the scan. The row comparison
# (xid, position) > (:xid, :position) is spelt as two branches, the rest of the cursor's
# transaction and the transactions after it, so that each is one index range: an OR would
# leave `position` to a filter and read a large transaction (the events migration 0016 gave
# xid 0) from its start on every page.
_BRANCH = """
    (SELECT e.id, e.type, e.payload, e.created_at, e.xid, e.position
     FROM events e
     WHERE e.tenant_id = :tenant_id
       AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
       AND {after}
       {filters}
     ORDER BY e.xid, e.position
     LIMIT :limit)
"""
FEED = f"""
    SELECT page.id, page.type, page.payload, page.created_at, page.xid::text AS xid,
           page.position
    FROM ({
    _BRANCH.format(
        after="e.xid = CAST(:xid AS xid8) AND e.position > :position", filters="{filters}"
    )
}
          UNION ALL
          {_BRANCH.format(after="e.xid > CAST(:xid AS xid8)", filters="{filters}")}) AS page
    ORDER BY page.xid, page.position
    LIMIT :limit
"""
BY_TYPE = "AND e.type = ANY(:types)"
BY_USER = """AND EXISTS (
        SELECT 1 FROM transactions t
        WHERE t.id = e.transaction_id AND (t.user_id = :user_id OR t.to_user_id = :user_id))"""


def event_cursor(xid: int | str, position: int) -> str:
    """The opaque cursor of the event at (xid, position)."""
    return encode_cursor(f"e1:{xid}:{position}")


def parse_position(text_: str) -> tuple[int, int]:
    """(xid, position) from a cursor's text; ValueError for anything else."""
    tag, xid, position = text_.split(":")
    if tag != "e1" or not xid.isdigit() or not position.isdigit():
        raise ValueError(text_)
    parsed = int(xid), int(position)
    if parsed[0] > MAX_XID or parsed[1] > MAX_POSITION:
        raise ValueError(text_)
    return parsed


def read_feed(
    conn: Connection,
    tenant_id: uuid.UUID,
    *,
    after: str | None = None,
    limit: int = 100,
    user_id: str | None = None,
    types: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Up to `limit` of the tenant's events after the cursor `after` (from the start
    without one), and the cursor to continue from: the last event's, or `after` itself."""
    xid, position = decode_cursor(after, parse_position) if after else START
    filters = []
    params: dict[str, Any] = {
        "tenant_id": tenant_id,
        "xid": str(xid),
        "position": position,
        "limit": max(1, min(limit, MAX_FEED_PAGE)),
    }
    if types:
        filters.append(BY_TYPE)
        params["types"] = list(types)
    if user_id is not None:
        filters.append(BY_USER)
        params["user_id"] = user_id
    rows = conn.execute(text(FEED.format(filters="\n".join(filters))), params).mappings().all()
    events = [
        {
            "id": str(row["id"]),
            "cursor": event_cursor(row["xid"], row["position"]),
            "type": row["type"],
            "occurred_at": iso(row["created_at"]),
            "data": row["payload"],
        }
        for row in rows
    ]
    return {"events": events, "next_cursor": events[-1]["cursor"] if events else after}
