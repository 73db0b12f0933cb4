"""The Celery app, configured for a ledger: late acks, no result backend, small prefetch."""

from __future__ import annotations

from celery import Celery

APPLY_TASK = "tally.apply_transactions"


def make_celery(broker_url: str, queue: str = "tally") -> Celery:
    """A Celery app on `broker_url` (redis://, redis+socket:// or amqp://) and `queue`."""
    app = Celery("tally", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        accept_content=["json"],
        # Outcomes live in PostgreSQL; a result backend would be a second source of truth.
        task_ignore_result=True,
        # Ack after the ledger commit; a worker that dies mid-batch leaves the message to be
        # redelivered, and the relay re-publishes anything still queued in any case.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=16,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        # A publish that cannot reach the broker must not hold an HTTP request for long:
        # the row is committed and the relay will publish it.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        broker_transport_options={"socket_timeout": 3, "socket_connect_timeout": 3},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app
