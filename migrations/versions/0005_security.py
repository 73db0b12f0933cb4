"""Defense in depth: key scopes, last use, the audit trail, per-tenant rate limits, and
row-level security under the roles that run Tally.

Roles (cluster-wide, so created only when missing and never dropped by a downgrade,
since other databases of the cluster may use them):

- the migrating role owns every table and is the *service* role: workers, relay,
  dispatcher and the CLI run as it; their batches span tenants, so its policy sees every
  row (named `service_all`, so that forcing RLS leaves it working);
- `tally_api` runs every tenant query of the API: it owns nothing, cannot bypass RLS,
  and sees only the rows of the tenant named by the transaction-local setting
  `tally.tenant_id`; before the tenant is known it can only call `tally_authenticate`;
- `tally_monitor` reads the cross-tenant counts `/metrics` shows, and nothing else.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "tally_api"
MONITOR_ROLE = "tally_monitor"

# Every table holding a tenant's rows, with what the API may do to it.
TENANT_TABLES = {
    "api_keys": "SELECT, INSERT",
    "assets": "SELECT, INSERT",
    "accounts": "SELECT, INSERT, UPDATE",
    "transactions": "SELECT, INSERT, UPDATE",
    "entries": "SELECT",
    "holds": "SELECT",
    "events": "SELECT, INSERT",
    "webhook_endpoints": "SELECT, INSERT, UPDATE, DELETE",
    "webhook_deliveries": "SELECT, INSERT, UPDATE",
    "webhook_attempts": "SELECT",
    "audit_events": "SELECT, INSERT",
}
# The columns of a key the API may change: revoking it. `last_used_at` is stamped by
# tally_authenticate, as the owner.
API_KEY_UPDATABLE = "revoked_at"
MONITOR_TABLES = ("transactions", "webhook_deliveries")


def _create_role(name: str) -> None:
    # Concurrent migrations of two databases on one cluster may race to create it.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
                CREATE ROLE {name} NOLOGIN NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END
        $$
        """
    )
    # The service role switches to it (SET ROLE) for the API's connections.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT pg_has_role(current_user, '{name}', 'MEMBER') THEN
                EXECUTE format('GRANT {name} TO %I', current_user);
            END IF;
        END
        $$
        """
    )


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column("scope", sa.Text(), server_default=sa.text("'write'"), nullable=False),
    )
    op.execute("UPDATE api_keys SET scope = 'admin' WHERE is_admin")
    op.drop_column("api_keys", "is_admin")
    op.create_check_constraint(
        op.f("ck_api_keys_scope_known"), "api_keys", "scope IN ('admin', 'write', 'read')"
    )
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True)))
    # Stamping `last_used_at` must not make every API process drop the key from its cache.
    op.execute("DROP TRIGGER api_keys_notify_change ON api_keys")
    op.execute(
        """
        CREATE TRIGGER api_keys_notify_change
        AFTER UPDATE OF tenant_id, key_hash, scope, revoked_at OR DELETE ON api_keys
        FOR EACH ROW EXECUTE FUNCTION notify_api_key_change()
        """
    )
    op.add_column("tenants", sa.Column("rate_limit_per_second", sa.Integer()))
    op.create_check_constraint(
        op.f("ck_tenants_rate_limit_positive"),
        "tenants",
        "rate_limit_per_second IS NULL OR rate_limit_per_second > 0",
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("actor_key_id", sa.UUID(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_audit_events_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["actor_key_id"], ["api_keys.id"], name=op.f("fk_audit_events_actor_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_tenant_id_id", "audit_events", ["tenant_id", "id"])
    op.execute(
        """
        CREATE FUNCTION audit_events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit events are append-only';
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_are_immutable()
        """
    )
    _row_level_security()


def _row_level_security() -> None:
    _create_role(API_ROLE)
    _create_role(MONITOR_ROLE)
    op.execute(
        """
        CREATE FUNCTION tally_current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$
            SELECT nullif(current_setting('tally.tenant_id', true), '')::uuid
        $$
        """
    )
    for table, privileges in TENANT_TABLES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY service_all ON {table} TO CURRENT_USER USING (true) WITH CHECK (true)"
        )
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {API_ROLE}"
            " USING (tenant_id = tally_current_tenant())"
            " WITH CHECK (tenant_id = tally_current_tenant())"
        )
        op.execute(f"GRANT {privileges} ON {table} TO {API_ROLE}")
    op.execute(f"GRANT UPDATE ({API_KEY_UPDATABLE}) ON api_keys TO {API_ROLE}")
    op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY service_all ON tenants TO CURRENT_USER USING (true) WITH CHECK (true)"
    )
    op.execute(
        f"CREATE POLICY tenant_isolation ON tenants TO {API_ROLE}"
        " USING (id = tally_current_tenant())"
    )
    op.execute(f"GRANT SELECT ON tenants TO {API_ROLE}")
    for table in MONITOR_TABLES:
        op.execute(
            f"CREATE POLICY monitor_read ON {table} FOR SELECT TO {MONITOR_ROLE} USING (true)"
        )
        op.execute(f"GRANT SELECT ON {table} TO {MONITOR_ROLE}")
    for role in (API_ROLE, MONITOR_ROLE):
        op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {API_ROLE}")
    # The one way in before the tenant is known: a key's hash to its principal. It runs as
    # the owner (SECURITY DEFINER) and stamps the key's last use at most once a minute.
    op.execute(
        """
        CREATE FUNCTION tally_authenticate(p_key_hash text)
        RETURNS TABLE (key_id uuid, tenant_id uuid, scope text, prefix text,
                       rate_limit_per_second integer)
        LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH live AS (
                SELECT k.id, k.tenant_id, k.scope, k.prefix, t.rate_limit_per_second
                FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL
            ), stamped AS (
                UPDATE api_keys SET last_used_at = now()
                WHERE id = (SELECT id FROM live)
                  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
            )
            SELECT id, tenant_id, scope, prefix, rate_limit_per_second FROM live
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION tally_authenticate(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION tally_authenticate(text) TO {API_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION tally_authenticate(text)")
    for table in (*TENANT_TABLES, "tenants"):
        op.execute(f"DROP POLICY tenant_isolation ON {table}")
        op.execute(f"DROP POLICY service_all ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    for table in MONITOR_TABLES:
        op.execute(f"DROP POLICY monitor_read ON {table}")
    op.execute("DROP TABLE audit_events")
    op.execute("DROP FUNCTION audit_events_are_immutable()")
    op.execute("DROP FUNCTION tally_current_tenant()")
    for role in (API_ROLE, MONITOR_ROLE):
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
    op.drop_constraint(op.f("ck_tenants_rate_limit_positive"), "tenants")
    op.drop_column("tenants", "rate_limit_per_second")
    op.execute("DROP TRIGGER api_keys_notify_change ON api_keys")
    op.execute(
        """
        CREATE TRIGGER api_keys_notify_change
        AFTER UPDATE OR DELETE ON api_keys
        FOR EACH ROW EXECUTE FUNCTION notify_api_key_change()
        """
    )
    op.drop_column("api_keys", "last_used_at")
    op.drop_constraint(op.f("ck_api_keys_scope_known"), "api_keys")
    op.add_column(
        "api_keys",
        sa.Column("is_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute("UPDATE api_keys SET is_admin = scope = 'admin'")
    op.drop_column("api_keys", "scope")
