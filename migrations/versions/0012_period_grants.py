"""Period grants: the API closes a tenant's periods (`POST /periods/close`) as its own role,
bound to the tenant by row-level security, so `tally_api` may insert closes and their
balance snapshots and set its tenant's `closed_through`, nothing more.

Revision ID: 0012_period_grants
Revises: 0011_ledger_time
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_period_grants"
down_revision: str | None = "0011_ledger_time"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_ROLE = "tally_api"


def upgrade() -> None:
    op.execute(f"GRANT INSERT ON period_closes, balance_snapshots TO {API_ROLE}")
    op.execute(f"GRANT UPDATE (closed_through) ON tenants TO {API_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE UPDATE (closed_through) ON tenants FROM {API_ROLE}")
    op.execute(f"REVOKE INSERT ON period_closes, balance_snapshots FROM {API_ROLE}")
