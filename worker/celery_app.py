"""The Celery app, configured for a ledger: late acks, no result backend, small prefetch;
on RabbitMQ a quorum queue with publisher confirms."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from kombu import Exchange, Queue

APPLY_TASK = "tally.apply_transactions"

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
# RabbitMQ cannot change a queue's type in place, and declaring `tally` as a quorum queue
# where an earlier Tally left a classic `tally` fails with PRECONDITION_FAILED. So the
# quorum queue has a name of its own; what the classic queue still holds is re-published
# by the relay from PostgreSQL, and the queue itself can be deleted
# (docs/operations.md#upgrading-from-the-classic-queue).
QUORUM_QUEUE_SUFFIX = ".quorum"
# How long a publish waits for RabbitMQ's confirm before it counts as failed (and is left
# to the relay): about as long as a publish may wait to connect.
PUBLISH_CONFIRM_TIMEOUT_SECONDS = 3.0


def uses_rabbitmq(broker_url: str) -> bool:
    """Whether `broker_url` is an AMQP (RabbitMQ) broker."""
    return urlsplit(broker_url).scheme.lower() in AMQP_SCHEMES


def broker_queue_name(broker_url: str, queue: str) -> str:
    """The broker's name for Tally's queue `queue` (TALLY_QUEUE): `queue` itself on Redis,
    `<queue>.quorum` on RabbitMQ."""
    return queue + QUORUM_QUEUE_SUFFIX if uses_rabbitmq(broker_url) else queue


def quorum_queue(name: str) -> Queue:
    """Tally's queue on RabbitMQ: durable, replicated, declared with the same arguments by
    every publisher and worker (different ones would be a PRECONDITION_FAILED)."""
    return Queue(
        name,
        Exchange(name, type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )


def _rabbitmq_settings(
    name: str, transport_options: dict[str, Any], publisher_confirms: bool
) -> dict[str, Any]:
    return {
        "task_queues": [quorum_queue(name)],
        # A queue Celery would create on the fly (a `-Q` naming another queue) is a quorum
        # queue too, never a classic one.
        "task_create_missing_queue_type": "quorum",
        # Quorum queues have no global QoS: Celery sees the queue type and uses a static
        # per-consumer prefetch instead (worker_prefetch_multiplier x concurrency). Tally
        # sends no ETA or countdown tasks, the one feature that would block on it.
        "worker_detect_quorum_queues": True,
        # The broker acknowledges each publish once the queue has it (on a quorum of nodes
        # in a cluster); a publish it refuses raises instead of vanishing.
        "broker_transport_options": {**transport_options, "confirm_publish": publisher_confirms},
    }


def make_celery(
    broker_url: str, queue: str = "tally", *, publisher_confirms: bool = True
) -> Celery:
    """A Celery app on `broker_url` (redis://, redis+socket:// or amqp://) and Tally's queue
    `queue` (broker_queue_name says what the broker calls it); on RabbitMQ its publishes wait
    for the broker's confirm unless `publisher_confirms` is False."""
    app = Celery("tally", broker=broker_url, set_as_current=False)
    name = broker_queue_name(broker_url, queue)
    transport_options = {"socket_timeout": 3, "socket_connect_timeout": 3}
    app.conf.update(
        task_default_queue=name,
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
        broker_transport_options=transport_options,
        worker_hijack_root_logger=False,
        # Task events cost a broker message per task state: off, and turned on for a while
        # when wanted (`celery -A worker.celery_cli control enable_events`), which needs
        # remote control, Celery's default, kept on.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
    )
    if uses_rabbitmq(broker_url):
        app.conf.update(_rabbitmq_settings(name, transport_options, publisher_confirms))
    return app
