"""Webhook secrets sealed at rest: `secret` and `previous_secret` become Fernet tokens
(`secret_sealed`, `previous_secret_sealed`) under the first key of
TALLY_WEBHOOK_SECRET_KEYS, read from the environment of `tally migrate`.

Existing secrets are sealed in place; with secrets to seal and no key set, the migration
stops before changing anything. A downgrade opens them again with the same keys.

Revision ID: 0008_webhook_secrets_sealed
Revises: 0006
Create Date: 2026-12-07 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import Settings

revision: str = "0008_webhook_secrets_sealed"
down_revision: str | None = "0007_money_128"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "webhook_endpoints"
SEALED_CHECK = (
    "starts_with(secret_sealed, 'gAAAAA') AND (previous_secret_sealed IS NULL"
    " OR starts_with(previous_secret_sealed, 'gAAAAA'))"
)


def _fernet(direction: str) -> MultiFernet | None:
    """The keys from the environment; fails clearly if secrets exist and none is set."""
    keys = Settings.from_env().webhook_secret_keys
    if keys:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    if op.get_bind().execute(sa.text(f"SELECT EXISTS (SELECT FROM {TABLE})")).scalar():
        raise RuntimeError(
            f"webhook endpoints exist and TALLY_WEBHOOK_SECRET_KEYS is not set: it is needed"
            f" to {direction} their secrets (`tally webhook-secrets new-key` makes a key)"
        )
    return None


def upgrade() -> None:
    fernet = _fernet("seal")
    op.add_column(TABLE, sa.Column("secret_sealed", sa.Text()))
    op.add_column(TABLE, sa.Column("previous_secret_sealed", sa.Text()))
    conn = op.get_bind()
    rows = conn.execute(sa.text(f"SELECT id, secret, previous_secret FROM {TABLE} FOR UPDATE"))
    for row in rows.all():
        assert fernet is not None
        conn.execute(
            sa.text(
                f"UPDATE {TABLE} SET secret_sealed = :secret, previous_secret_sealed = :previous"
                " WHERE id = :id"
            ),
            {
                "id": row.id,
                "secret": fernet.encrypt(row.secret.encode()).decode(),
                "previous": (
                    fernet.encrypt(row.previous_secret.encode()).decode()
                    if row.previous_secret is not None
                    else None
                ),
            },
        )
    op.drop_constraint(op.f("ck_webhook_endpoints_secret_format"), TABLE)
    op.drop_constraint(op.f("ck_webhook_endpoints_previous_secret_expiry"), TABLE)
    op.drop_column(TABLE, "secret")
    op.drop_column(TABLE, "previous_secret")
    op.alter_column(TABLE, "secret_sealed", nullable=False)
    op.create_check_constraint(op.f("ck_webhook_endpoints_secrets_sealed"), TABLE, SEALED_CHECK)
    op.create_check_constraint(
        op.f("ck_webhook_endpoints_previous_secret_expiry"),
        TABLE,
        "(previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL)",
    )


def downgrade() -> None:
    fernet = _fernet("open")
    op.add_column(TABLE, sa.Column("secret", sa.Text()))
    op.add_column(TABLE, sa.Column("previous_secret", sa.Text()))
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(f"SELECT id, secret_sealed, previous_secret_sealed FROM {TABLE} FOR UPDATE")
    )
    for row in rows.all():
        assert fernet is not None
        try:
            secret = fernet.decrypt(row.secret_sealed.encode()).decode()
            previous = (
                fernet.decrypt(row.previous_secret_sealed.encode()).decode()
                if row.previous_secret_sealed is not None
                else None
            )
        except InvalidToken:
            raise RuntimeError(
                f"no key in TALLY_WEBHOOK_SECRET_KEYS opens the secret of endpoint {row.id}"
            ) from None
        conn.execute(
            sa.text(
                f"UPDATE {TABLE} SET secret = :secret, previous_secret = :previous WHERE id = :id"
            ),
            {"id": row.id, "secret": secret, "previous": previous},
        )
    op.drop_constraint(op.f("ck_webhook_endpoints_secrets_sealed"), TABLE)
    op.drop_constraint(op.f("ck_webhook_endpoints_previous_secret_expiry"), TABLE)
    op.drop_column(TABLE, "secret_sealed")
    op.drop_column(TABLE, "previous_secret_sealed")
    op.alter_column(TABLE, "secret", nullable=False)
    op.create_check_constraint(
        op.f("ck_webhook_endpoints_secret_format"), TABLE, "starts_with(secret, 'whsec_')"
    )
    op.create_check_constraint(
        op.f("ck_webhook_endpoints_previous_secret_expiry"),
        TABLE,
        "(previous_secret IS NULL) = (previous_secret_expires_at IS NULL)",
    )
