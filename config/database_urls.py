"""PostgreSQL URL forms: the usual `postgresql://` one, and the driver URL SQLAlchemy needs."""

from __future__ import annotations


def sqlalchemy_url(url: str) -> str:
    """Turn the usual `postgresql://` form into the psycopg 3 driver URL SQLAlchemy needs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The plain libpq form of a (possibly SQLAlchemy-style) PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def login_as(url: str, user: str, password: str | None = None) -> str:
    """The same server and database as `url`, logged in as `user` (with `password`)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=user, password=password).render_as_string(hide_password=False)
