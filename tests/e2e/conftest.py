"""Fixtures for end-to-end tests: real brokers and a real API + worker stack per broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ledger.posting import post_transactions
from tests.conftest import backend_missing
from tests.support.stack import Stack, stack_env


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """TALLY_TEST_AMQP_URL; RabbitMQ cannot be embedded, so without it these tests skip."""
    url = os.environ.get("TALLY_TEST_AMQP_URL")
    if not url:
        backend_missing("TALLY_TEST_AMQP_URL is not set: no RabbitMQ to test against")
    return str(url)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each end-to-end module runs once per broker."""
    name = request.param
    return str(request.getfixturevalue("redis_url" if name == "redis" else "amqp_url"))


def _start(database_url: str, broker_url: str, log_dir: Path) -> Stack:
    stack = Stack(database_url, broker_url, log_dir, stack_env(database_url, broker_url))
    stack.start_api()
    stack.start_worker()
    return stack


@pytest.fixture(scope="module")
def stack(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """API (gunicorn) and one worker (Celery, with relay) on the given broker."""
    stack = _start(database_url, broker_url, tmp_path_factory.mktemp("stack-logs"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def nothing_left_queued(engine: Engine) -> Iterator[None]:
    """For a module whose stack runs no worker: apply whatever a failed test left queued, so
    no later module's worker finds (and counts) it."""
    yield
    while post_transactions(engine, [], fill_to=1000).outcomes:
        pass
