"""The API's publisher on a real Redis broker: ids one at a time are sent at once, ids that
come faster than one message per linger share a message.

The messages are read off the broker's own list for the queue (Celery's message format:
the body is the task's `[args, kwargs, embed]`), so what is checked is what a worker gets.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from worker.publisher import Publisher

# Long enough that "waited for the linger" and "sent at once" cannot be confused.
LINGER = 1.0
AT_ONCE = 0.5


@pytest.fixture
def queue(redis_url: str) -> Iterator[tuple[str, redis.Redis]]:
    name = f"test-publisher-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    try:
        yield name, client
    finally:
        client.delete(name)
        client.close()


def messages_after(client: redis.Redis, queue: str, count: int) -> tuple[list[list[str]], float]:
    """Wait until the queue holds `count` messages: the ids each carries (oldest first), and
    when the last of them arrived (time.monotonic)."""
    deadline = time.monotonic() + 10
    while client.llen(queue) < count:
        assert time.monotonic() < deadline, f"fewer than {count} messages after 10 s"
        time.sleep(0.005)  # polling the broker's list with a deadline
    arrived = time.monotonic()
    raw = reversed(client.lrange(queue, 0, -1))  # LPUSHed: the oldest is last
    bodies = [json.loads(base64.b64decode(json.loads(message)["body"])) for message in raw]
    return [args[0] for args, _kwargs, _embed in bodies], arrived


def test_ids_that_come_one_at_a_time_are_each_sent_at_once(
    redis_url: str, queue: tuple[str, redis.Redis]
) -> None:
    name, client = queue
    publisher = Publisher(redis_url, name, linger=LINGER)

    for count, transaction_id in enumerate(["first", "second", "third"], start=1):
        published = time.monotonic()
        assert publisher.publish([transaction_id])
        sent, arrived = messages_after(client, name, count)
        # A client waiting for each transaction before the next is not held for the linger.
        assert arrived - published < AT_ONCE, (transaction_id, arrived - published)

    assert sent == [["first"], ["second"], ["third"]]


def test_ids_that_come_together_share_a_message_sent_once_per_linger(
    redis_url: str, queue: tuple[str, redis.Redis]
) -> None:
    name, client = queue
    publisher = Publisher(redis_url, name, linger=LINGER)

    assert publisher.publish(["a", "b"])  # two at once: sent at once, and the load is on
    _, first_arrived = messages_after(client, name, 1)
    for transaction_id in ("c", "d", "e"):
        assert publisher.publish([transaction_id])
    sent, second_arrived = messages_after(client, name, 2)

    assert sent == [["a", "b"], ["c", "d", "e"]]
    assert second_arrived - first_arrived >= LINGER * 0.9
    assert client.llen(name) == 2
