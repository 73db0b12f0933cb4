"""Reading a RabbitMQ queue's definition over AMQP, without the management plugin or CLI.

AMQP's queue.declare-ok carries no queue type, so the type is read the way RabbitMQ checks
it: a declare whose arguments differ from the queue's is refused with PRECONDITION_FAILED,
naming the queue's own value.
"""

from __future__ import annotations

from amqp.exceptions import PreconditionFailed
from kombu import Connection, Queue


def declared_type_refusal(amqp_url: str, name: str, queue_type: str) -> str | None:
    """RabbitMQ's refusal of a declare of `name` as `queue_type`, or None if it accepted it."""
    with Connection(amqp_url, connect_timeout=3) as connection:
        queue = Queue(name, queue_arguments={"x-queue-type": queue_type})
        try:
            queue(connection.channel()).declare()
        except PreconditionFailed as refusal:
            return str(refusal)
    return None


def queue_counts(amqp_url: str, name: str) -> tuple[int, int]:
    """The (messages, consumers) of an existing queue, from a passive declare."""
    with Connection(amqp_url, connect_timeout=3) as connection:
        _, messages, consumers = connection.default_channel.queue_declare(name, passive=True)
    return int(messages), int(consumers)
