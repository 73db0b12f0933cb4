"""Notify `tally_api_keys` with a key's id whenever its row changes or goes.

API processes cache the keys they have looked up; a revocation (an UPDATE setting
`revoked_at`), or any other change to a key, must reach every one of them. The trigger
notifies in the same commit, whatever path made the change (the CLI, SQL by hand).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 19:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION notify_api_key_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('tally_api_keys', OLD.id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER api_keys_notify_change
        AFTER UPDATE OR DELETE ON api_keys
        FOR EACH ROW EXECUTE FUNCTION notify_api_key_change()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER api_keys_notify_change ON api_keys")
    op.execute("DROP FUNCTION notify_api_key_change()")
