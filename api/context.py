"""What the app holds per process: the engine, the task publisher, the long-poll waiter,
the API key cache, the submission combiner, the rate limiter, the count of failed
authentications per address and the webhook secret box."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Engine

from api.auth_failures import AuthFailures
from api.combiner import SubmissionCombiner
from api.key_cache import KeyCache
from api.rate_limits import RateLimiter
from api.waiter import TransactionWaiter
from config.settings import Settings
from ledger.webhooks.secrets import SecretBox
from worker.publisher import Publisher


@dataclass
class Tally:
    settings: Settings
    engine: Engine
    publisher: Publisher
    waiter: TransactionWaiter
    keys: KeyCache
    combiner: SubmissionCombiner
    limiter: RateLimiter
    auth_failures: AuthFailures
    secret_box: SecretBox


def tally() -> Tally:
    """The running app's Tally context."""
    context: Tally = current_app.extensions["tally"]
    return context
