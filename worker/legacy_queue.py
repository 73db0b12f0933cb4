"""The classic queue an earlier Tally left on RabbitMQ, before Tally's queue was a quorum queue.

Nothing in it is lost if it is never read: every transaction it names is still `queued` in
PostgreSQL (or already decided), and the relay re-publishes queued ones into the quorum
queue. The worker only says, once at start, that the queue is there and may be deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_ready

log = logging.getLogger(__name__)


def legacy_queue_messages(app: Celery, name: str) -> int | None:
    """How many messages the queue `name` holds, or None when RabbitMQ has no such queue."""
    with app.connection_for_write() as connection:
        # A passive declare never creates the queue; for a missing one the broker closes
        # the channel (404), so it gets a channel of its own.
        channel = connection.channel()
        try:
            _, messages, _ = channel.queue_declare(name, passive=True)
        except connection.channel_errors:
            return None
        channel.close()
    return int(messages)


def warn_about_legacy_queue(app: Celery, legacy_name: str) -> None:
    """Once the worker is up, log whether an earlier Tally's classic queue is still there."""

    def check(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return  # another app's worker in this process
        try:
            messages = legacy_queue_messages(app, legacy_name)
        except Exception as error:  # a report only: it must never stop the worker
            log.info("could not look for the classic queue %r: %s", legacy_name, error)
            return
        if messages is not None:
            log.warning(
                "RabbitMQ still has the queue %r (%d messages) of an earlier Tally; Tally now "
                "uses the quorum queue %r. Nothing in it is lost: the relay re-publishes every "
                "transaction still queued. Delete it once no earlier Tally process runs "
                "(rabbitmqctl delete_queue %s).",
                legacy_name,
                messages,
                app.conf.task_default_queue,
                legacy_name,
            )

    worker_ready.connect(check, weak=False)
