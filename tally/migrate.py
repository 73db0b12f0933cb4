"""Running the Alembic migrations from code (`tally migrate`, tests, `tally dev`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at this package's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


def set_login_passwords(database_url: str, passwords: Mapping[str, str | None]) -> list[str]:
    """Give each role its password (those given; roles are cluster-wide, so every database
    of the cluster sees the change); the roles changed."""
    import psycopg
    from psycopg import sql

    from config.database_urls import libpq_url

    changed = [role for role, password in passwords.items() if password]
    if not changed:
        return []
    with psycopg.connect(libpq_url(database_url)) as conn:
        for role in changed:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(passwords[role])
                )
            )
    return changed
