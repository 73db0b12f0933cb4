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
