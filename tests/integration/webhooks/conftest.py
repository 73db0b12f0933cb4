"""Fixtures for webhook integration tests: a real receiver and an in-process dispatcher."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine

from config.settings import Settings
from tally.webhook_receiver import WebhookReceiver
from tests.conftest import WEBHOOK_SECRET_KEYS
from worker.webhook_dispatcher import Sender, WebhookDispatcher
from worker.webhook_http import post_webhook


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        webhook_secret_keys=WEBHOOK_SECRET_KEYS,
        database_url=database_url,
        broker_url=None,
        webhook_allow_private_targets=True,
        webhook_retry_schedule=(0, 1, 1),
        webhook_timeout_seconds=1.0,
        webhook_concurrency=8,
    )


@pytest.fixture
def start_dispatcher(
    engine: Engine, settings: Settings
) -> Iterator[Callable[..., WebhookDispatcher]]:
    """Run dispatchers in this process (in threads) until the test ends; `send` may be a fake."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(send: Sender = post_webhook, **overrides: Any) -> WebhookDispatcher:
        dispatcher = WebhookDispatcher(replace(settings, **overrides), engine, send)
        thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
        thread.start()
        threads.append(thread)
        return dispatcher

    yield start
    stop.set()
    for thread in threads:
        thread.join(15)
