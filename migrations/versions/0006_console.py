"""The operator console: server-side sign-in sessions, and the indexes its searches use.

A session is a random token in an `HttpOnly` cookie; the database keeps only its hash,
the key that signed in, and the session's CSRF token. Like an API key, a session is
resolved before its tenant is known, so the API role reads it only through the
`SECURITY DEFINER` function `tally_console_session`, which also ends it when it has been
idle too long or its key has been revoked.

The searches: a tenant's transactions newest first (and within a time range), by user
(either side of a transfer or hold), what was decided lately (the overview's charts), an
endpoint's deliveries by status (its health), and a transaction's webhook deliveries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "tally_api"


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=False),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_console_sessions_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_console_sessions_api_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_api_key_id"), "console_sessions", ["api_key_id"])
    op.execute("ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE console_sessions FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY service_all ON console_sessions TO CURRENT_USER"
        " USING (true) WITH CHECK (true)"
    )
    op.execute(
        f"CREATE POLICY tenant_isolation ON console_sessions TO {API_ROLE}"
        " USING (tenant_id = tally_current_tenant())"
        " WITH CHECK (tenant_id = tally_current_tenant())"
    )
    op.execute(f"GRANT SELECT, INSERT ON console_sessions TO {API_ROLE}")
    op.execute(f"GRANT UPDATE (ended_at) ON console_sessions TO {API_ROLE}")
    op.execute(
        """
        CREATE FUNCTION tally_console_session(p_token_hash text, p_idle_seconds integer,
                                              p_max_seconds integer)
        RETURNS TABLE (key_id uuid, tenant_id uuid, scope text, prefix text,
                       rate_limit_per_second integer, csrf_token text)
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH live AS (
                SELECT s.token_hash, k.id, k.tenant_id, k.scope, k.prefix,
                       t.rate_limit_per_second, s.csrf_token
                FROM console_sessions s
                JOIN api_keys k ON k.id = s.api_key_id
                JOIN tenants t ON t.id = k.tenant_id
                WHERE s.token_hash = p_token_hash AND s.ended_at IS NULL
                  AND k.revoked_at IS NULL
                  AND s.last_seen_at > now() - make_interval(secs => p_idle_seconds)
                  AND s.created_at > now() - make_interval(secs => p_max_seconds)
            ), seen AS (
                UPDATE console_sessions SET last_seen_at = now()
                WHERE token_hash = (SELECT token_hash FROM live)
            )
            SELECT id, tenant_id, scope, prefix, rate_limit_per_second, csrf_token FROM live
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION tally_console_session(text, integer, integer) FROM PUBLIC")
    op.execute(
        f"GRANT EXECUTE ON FUNCTION tally_console_session(text, integer, integer) TO {API_ROLE}"
    )
    op.create_index(
        "ix_transactions_tenant_created", "transactions", ["tenant_id", "created_at", "seq"]
    )
    op.create_index(
        "ix_transactions_tenant_user", "transactions", ["tenant_id", "user_id", "created_at", "seq"]
    )
    op.create_index(
        "ix_transactions_tenant_to_user",
        "transactions",
        ["tenant_id", "to_user_id", "created_at", "seq"],
        postgresql_where=sa.text("to_user_id IS NOT NULL"),
    )
    # The overview's charts read what was decided in the last hour; queued rows are not in
    # it, so intake never writes to it.
    op.create_index(
        "ix_transactions_tenant_completed",
        "transactions",
        ["tenant_id", "completed_at"],
        postgresql_where=sa.text("completed_at IS NOT NULL"),
    )
    # An endpoint's backlog and failures, for its health.
    op.create_index(
        op.f("ix_webhook_deliveries_endpoint_id_status"),
        "webhook_deliveries",
        ["endpoint_id", "status"],
    )
    op.create_index(
        op.f("ix_webhook_deliveries_event_id"),
        "webhook_deliveries",
        ["event_id"],
        postgresql_where=sa.text("event_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_event_id"), "webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_endpoint_id_status"), "webhook_deliveries")
    op.drop_index("ix_transactions_tenant_completed", "transactions")
    op.drop_index("ix_transactions_tenant_to_user", "transactions")
    op.drop_index("ix_transactions_tenant_user", "transactions")
    op.drop_index("ix_transactions_tenant_created", "transactions")
    op.execute("DROP FUNCTION tally_console_session(text, integer, integer)")
    op.drop_table("console_sessions")
