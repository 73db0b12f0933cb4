"""The API and its metrics log in as their own roles: `tally_api` and `tally_monitor` get
LOGIN and may connect to this database, so the API no longer logs in as the owner and
`SET ROLE`s down (from where `RESET ROLE` would climb back). `tally migrate` sets their
passwords from TALLY_API_DB_PASSWORD and TALLY_MONITOR_DB_PASSWORD when given.

Roles are cluster-wide: a downgrade revokes this database's CONNECT grant but leaves LOGIN,
which other databases of the cluster may rely on.

Revision ID: 0009_api_login
Revises: 0008_webhook_secrets_sealed
Create Date: 2026-12-07 17:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_api_login"
down_revision: str | None = "0008_webhook_secrets_sealed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOGIN_ROLES = ("tally_api", "tally_monitor")


def upgrade() -> None:
    for role in LOGIN_ROLES:
        # Only when missing: concurrent migrations of two databases would race on the role.
        op.execute(
            f"""
            DO $$
            BEGIN
                IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = '{role}') THEN
                    ALTER ROLE {role} LOGIN;
                END IF;
                EXECUTE format('GRANT CONNECT ON DATABASE %I TO {role}', current_database());
            END
            $$
            """
        )


def downgrade() -> None:
    for role in LOGIN_ROLES:
        op.execute(
            f"""
            DO $$
            BEGIN
                EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM {role}', current_database());
            END
            $$
            """
        )
