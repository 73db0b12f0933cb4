"""The worker's Celery app with its tasks bound (used by `tally worker` and worker.celery_cli)."""

from __future__ import annotations

from celery import Celery

from config.settings import Settings
from worker.celery_app import make_celery, uses_rabbitmq
from worker.legacy_queue import warn_about_legacy_queue
from worker.tasks import register_tasks


def create_worker_app(settings: Settings) -> Celery:
    broker_url = settings.require_broker_url()
    # The worker publishes no tasks, only its events and control replies. Waiting for
    # confirms there would let a broker that blocks publishers (a memory alarm) stop its
    # event loop, and with it the acks that would let the broker drain.
    app = make_celery(broker_url, settings.queue, publisher_confirms=False)
    register_tasks(app, settings)
    if uses_rabbitmq(broker_url):
        warn_about_legacy_queue(app, settings.queue)
    return app
