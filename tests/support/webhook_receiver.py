"""The tests' webhook receiver is Tally's own (`tally/webhook_receiver.py`, shared with the
bench and the chaos run); this module keeps the names the integration tests import here."""

from __future__ import annotations

from tally.webhook_receiver import HANG, Answer, Received, WebhookReceiver
from tests.support.stack import eventually

__all__ = ["HANG", "Answer", "Received", "WebhookReceiver", "eventually"]
