"""The worker's Celery app at module level, for Celery's own tools against Tally's workers:

    celery -A worker.celery_cli inspect ping      (also: inspect active, inspect stats)
    celery -A worker.celery_cli status
    celery -A worker.celery_cli control enable_events
    celery -A worker.celery_cli flower            (with `pip install flower`)

It reads BROKER_URL and TALLY_QUEUE (and the rest of the settings) as `tally worker` does,
and connects to nothing until a command does.
"""

from __future__ import annotations

from config.settings import Settings
from worker.main import create_worker_app

app = create_worker_app(Settings.from_env())
