"""The event feed: each event's committing transaction id and an insert position.

`xid` is the id of the database transaction that wrote the event (`pg_current_xact_id()`),
`position` an identity that orders the events one transaction wrote. GET /events lists a
tenant's events by (xid, position) and only those with an xid below the xmin of its
snapshot: every transaction below it has ended, and an event committed later has an xid at
or above that xmin, so it sorts after any cursor already handed out (docs/design.md).
Existing events get xid 0, below every real one, and positions in created_at order.

Revision ID: 0016_event_feed
Revises: 0015_journal_chains
Create Date: 2026-12-08 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_event_feed"
down_revision: str | None = "0015_journal_chains"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE events ADD COLUMN xid xid8")
    op.execute("UPDATE events SET xid = '0'")
    op.execute("ALTER TABLE events ALTER COLUMN xid SET NOT NULL")
    op.execute("ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id()")
    op.add_column("events", sa.Column("position", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE events SET position = numbered.n FROM"
        " (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM events) AS numbered"
        " WHERE events.id = numbered.id"
    )
    op.execute("ALTER TABLE events ALTER COLUMN position SET NOT NULL")
    op.execute("ALTER TABLE events ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY")
    op.execute(
        "SELECT setval(pg_get_serial_sequence('events', 'position'),"
        " coalesce((SELECT max(position) FROM events), 0) + 1, false)"
    )
    op.create_index("ix_events_tenant_id_xid_position", "events", ["tenant_id", "xid", "position"])


def downgrade() -> None:
    op.drop_index("ix_events_tenant_id_xid_position", table_name="events")
    op.drop_column("events", "position")
    op.drop_column("events", "xid")
