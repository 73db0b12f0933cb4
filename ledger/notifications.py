"""One LISTEN connection on a PostgreSQL channel, kept open (reconnecting) until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from config.database_urls import libpq_url

log = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 5
# How long a wait for notifications lasts before `stop` is looked at again.
POLL_SECONDS = 1.0


def _nothing() -> None:
    return None


def listen(
    database_url: str,
    channel: str,
    stop: threading.Event,
    on_notify: Callable[[str], None],
    *,
    on_listening: Callable[[], None] = _nothing,
    on_lost: Callable[[], None] = _nothing,
    name: str = "listener",
    reconnect_delay: float = RECONNECT_DELAY_SECONDS,
) -> None:
    """LISTEN on `channel`, calling `on_notify(payload)` per notification, until `stop` is set.

    `on_listening` runs each time LISTEN is in place (after every reconnect too): anything
    notified while no connection listened is lost, so the caller should look again then.
    `on_lost` runs after a connection error, before the `reconnect_delay` pause.
    """
    url = libpq_url(database_url)
    listen_sql = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
    while not stop.is_set():
        try:
            with psycopg.connect(
                url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            ) as conn:
                conn.execute(listen_sql)
                on_listening()
                while not stop.is_set():
                    for notify in conn.notifies(timeout=POLL_SECONDS):
                        on_notify(notify.payload)
        except psycopg.Error as error:
            log.warning("%s lost its connection: %s", name, error)
            on_lost()
            stop.wait(reconnect_delay)
