from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from config.settings import DEFAULT_WEBHOOK_RETRY_SCHEDULE
from ledger.webhooks.dispatch import MAX_RETRY_AFTER_SECONDS, retry_delay
from worker.webhook_http import parse_retry_after


def test_the_default_schedule_is_eight_attempts_over_about_28_hours():
    waits = [retry_delay(DEFAULT_WEBHOOK_RETRY_SCHEDULE, n, None) for n in range(1, 9)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 36000, None]


def test_retry_after_lengthens_the_wait_but_never_shortens_it():
    assert retry_delay((0, 5, 300), 1, 60) == 60
    assert retry_delay((0, 5, 300), 2, 60) == 300
    assert retry_delay((0, 5), 1, 10**9) == MAX_RETRY_AFTER_SECONDS


def test_retry_after_cannot_extend_a_used_up_schedule():
    assert retry_delay((0, 1, 2), 3, 30) is None


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    assert parse_retry_after("120") == 120
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= parse_retry_after(in_a_minute) <= 60
    assert parse_retry_after("yesterday-ish") is None
    assert parse_retry_after(None) is None
