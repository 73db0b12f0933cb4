"""The worker's Celery app with its tasks bound (used by `tally worker`)."""

from __future__ import annotations

from celery import Celery

from config.settings import Settings
from worker.celery_app import make_celery
from worker.tasks import register_tasks


def create_worker_app(settings: Settings) -> Celery:
    app = make_celery(settings.require_broker_url(), settings.queue)
    register_tasks(app, settings)
    return app
