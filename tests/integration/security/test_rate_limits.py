"""Rate limits per key: 429 with Retry-After and the RateLimit fields, shared by every
API process through Redis, replays never starved, the manual webhook routes tighter.

Each app's limiter reads a clock the test holds still, so that every request of a test
falls in one window: the counts are exact, not a race against the second hand.
"""

from __future__ import annotations

import uuid

from flask import Flask
from sqlalchemy import Engine

from api.rate_limits import Policy, RateLimiter, storage_url
from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.keys import issue_api_key
from ledger.tenants import create_tenant, set_rate_limit

STILL = 1_800_000_000.25  # a quarter past some second


def hold_clock_still(*apps: Flask) -> None:
    for app in apps:
        app.extensions["tally"].limiter._clock = lambda: STILL


def limited_key(engine: Engine, per_second: int, scope: str = "write") -> str:
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, "limited")
        create_asset(work, tenant_id, "EUR", "Euro", 2)
        set_rate_limit(work, tenant_id, per_second)
        return issue_api_key(work, tenant_id, scope)["api_key"]


def get(app: Flask, key: str, path: str = "/api/v1/assets"):
    return app.test_client().get(path, headers={"Authorization": f"Bearer {key}"})


def post(app: Flask, key: str, path: str, body: dict):
    return app.test_client().post(path, json=body, headers={"Authorization": f"Bearer {key}"})


def topup(reference_id: str) -> dict:
    return {"user_id": "alice", "asset_code": "EUR", "amount": 5, "reference_id": reference_id}


def test_a_key_past_its_limit_is_answered_429_with_retry_after_and_ratelimit_fields(
    make_app, engine: Engine
):
    app = make_app()
    hold_clock_still(app)
    key = limited_key(engine, 2)

    answers = [get(app, key) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"per-key";q=2;w=1'
    assert answers[0].headers["RateLimit"] == '"per-key";r=1;t=1'
    refused = answers[2]
    assert refused.json["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit"] == '"per-key";r=0;t=1'


def test_every_api_process_counts_into_the_same_limit(make_app, engine: Engine):
    first, second = make_app(), make_app()
    hold_clock_still(first, second)
    key = limited_key(engine, 3)

    statuses = []
    for app in (first, second, first, second):
        statuses.append(get(app, key).status_code)
        # What each process's flusher does every TALLY_RATE_LIMIT_FLUSH_SECONDS, done now:
        # the counts are exact, not a race against the flush thread.
        for each in (first, second):
            each.extensions["tally"].limiter.flush()

    assert statuses == [200, 200, 200, 429]


def test_a_replay_of_an_accepted_reference_id_is_answered_past_the_limit(make_app, engine: Engine):
    app = make_app()
    hold_clock_still(app)
    key = limited_key(engine, 1)

    accepted = post(app, key, "/api/v1/wallets/topup", topup("order-1"))
    fresh = post(app, key, "/api/v1/wallets/topup", topup("order-2"))
    replayed = post(app, key, "/api/v1/wallets/topup", topup("order-1"))

    assert accepted.status_code == 202
    assert fresh.status_code == 429
    assert replayed.status_code == 200
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json["id"] == accepted.json["id"]


def test_the_manual_webhook_routes_have_a_tighter_budget(make_app, engine: Engine):
    app = make_app(webhook_manual_per_minute=2)
    hold_clock_still(app)
    key = limited_key(engine, 100, scope="admin")
    # A public address literal: nothing runs to send to it in this test.
    created = post(app, key, "/api/v1/webhook-endpoints", {"url": "https://1.1.1.1/hooks"})
    path = f"/api/v1/webhook-endpoints/{created.json['id']}"

    tests = [post(app, key, f"{path}/test", {}) for _ in range(3)]
    recover = post(app, key, f"{path}/recover", {"since": "2026-01-01T00:00:00Z"})
    other_routes = get(app, key, f"{path}/deliveries")

    assert [t.status_code for t in tests] == [202, 202, 429]
    assert tests[2].headers["RateLimit-Policy"] == '"webhook-manual";q=2;w=60'
    assert recover.status_code == 429
    assert other_routes.status_code == 200


def test_counts_go_through_redis_when_there_is_one():
    assert storage_url(None, "redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert storage_url(None, "redis+socket:///tmp/r.sock") == "redis+unix:///tmp/r.sock"
    assert storage_url(None, "amqp://guest@127.0.0.1//") is None
    assert storage_url("redis://127.0.0.1:6380/1", "amqp://x") == "redis://127.0.0.1:6380/1"
    assert RateLimiter(None).shared is False


def test_requests_pass_when_the_limit_storage_does_not_answer():
    # Nothing listens on loopback port 1: the storage is down.
    limiter = RateLimiter("redis://127.0.0.1:1/0")

    decision = limiter.hit(Policy("per-key", 1, 1), uuid.uuid4())

    assert decision.allowed


def test_counts_made_locally_reach_the_other_processes_within_a_flush(redis_url: str):
    key = uuid.uuid4()
    policy = Policy("per-key", 100, 60)
    first, second = (RateLimiter(redis_url, clock=lambda: STILL) for _ in range(2))

    # Below half the quota each process counts on its own...
    local = [first.hit(policy, key) for _ in range(30)] + [
        second.hit(policy, key) for _ in range(30)
    ]
    first.flush()
    second.flush()
    first.flush()  # its next flush brings back what the other added
    # ...and once the shared total passes half, every request asks Redis for it.
    exact = first.hit(policy, key)

    assert all(decision.allowed for decision in local)
    assert exact.remaining == 100 - 61
