"""Behind a TLS proxy (TALLY_TRUSTED_PROXIES) and under a flood of wrong keys: the session
cookie is Secure when the browser's request was HTTPS, per-address limits count the client
the proxy names (and only a trusted proxy may name one), and a failed authentication costs
the database nothing once an address is past TALLY_AUTH_FAILURES_PER_MINUTE."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from ledger.keys import well_formed_api_key
from tests.conftest import TenantFixture
from tests.integration.console.conftest import csrf_of

STILL = 1_800_000_000.25  # a quarter past some second
PROXY = "127.0.0.1"

MakeApp = Callable[..., Flask]


def hold_clocks_still(app: Flask) -> None:
    """Every request of the test falls in one window: the counts are exact."""
    context = app.extensions["tally"]
    context.limiter._clock = lambda: STILL
    context.auth_failures._clock = lambda: STILL


def loopback() -> str:
    """A loopback address of this test's own, so no other test's counts reach it."""
    return "127." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))


def client_at(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def unknown_key() -> str:
    return "tally_" + secrets.token_urlsafe(32)


@contextmanager
def counting_sql(app: Flask) -> Iterator[list[str]]:
    """The SQL statements the app's engine executes inside the block."""
    statements: list[str] = []
    engine = app.extensions["tally"].engine

    def record(*args: object) -> None:
        statements.append(str(args[2]))  # (conn, cursor, statement, ...)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def session_cookie(answer) -> str:
    return next(
        value
        for value in answer.headers.getlist("Set-Cookie")
        if value.startswith("tally_console=")
    )


def sign_in(client: FlaskClient, api_key: str, headers: dict[str, str] | None = None):
    form = client.get("/console/login", headers=headers)
    return client.post(
        "/console/login",
        data={"api_key": api_key, "csrf_token": csrf_of(form)},
        headers=headers,
    )


def bearer(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


# --- The session cookie behind a TLS proxy ---------------------------------------------


def test_the_session_cookie_is_secure_when_a_trusted_proxy_says_the_request_was_https(
    make_app: MakeApp, tenant: TenantFixture
) -> None:
    app = make_app(trusted_proxies=1)
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": loopback()}

    behind_tls = sign_in(client_at(app, PROXY), tenant.admin_api_key, https)
    plain = sign_in(client_at(app, PROXY), tenant.admin_api_key, {"X-Forwarded-Proto": "http"})

    assert behind_tls.status_code == 303 and "Secure" in session_cookie(behind_tls)
    assert plain.status_code == 303 and "Secure" not in session_cookie(plain)


def test_the_session_cookie_is_secure_on_a_direct_https_request(
    make_app: MakeApp, tenant: TenantFixture
) -> None:
    app = make_app()
    client = app.test_client()
    form = client.get("/console/login", base_url="https://localhost")

    answer = client.post(
        "/console/login",
        data={"api_key": tenant.admin_api_key, "csrf_token": csrf_of(form)},
        base_url="https://localhost",
    )

    assert answer.status_code == 303 and "Secure" in session_cookie(answer)


def test_with_no_trusted_proxy_spoofed_forwarded_headers_change_nothing(
    make_app: MakeApp, tenant: TenantFixture
) -> None:
    app = make_app(auth_failures_per_minute=3)
    hold_clocks_still(app)
    peer = loopback()
    client = client_at(app, peer)

    signed_in = sign_in(client, tenant.admin_api_key, {"X-Forwarded-Proto": "https"})
    # Each failure claims another client address: all of them are the peer's.
    failures = [
        client.get("/api/v1/assets", headers=bearer(unknown_key(), **{"X-Forwarded-For": a}))
        for a in (loopback(), loopback(), loopback(), loopback())
    ]
    console_failures = [
        sign_in(client, unknown_key(), {"X-Forwarded-For": loopback()}).status_code
        for _ in range(21)
    ]

    assert "Secure" not in session_cookie(signed_in)
    assert [f.status_code for f in failures] == [401, 401, 401, 429]
    assert console_failures == [401] * 20 + [429]


# --- Per-address limits count the address the trusted proxy names ----------------------


def test_the_sign_in_throttle_is_keyed_on_the_forwarded_address(
    make_app: MakeApp, tenant: TenantFixture
) -> None:
    app = make_app(trusted_proxies=1)
    hold_clocks_still(app)
    proxy = client_at(app, PROXY)
    noisy, quiet = {"X-Forwarded-For": loopback()}, {"X-Forwarded-For": loopback()}

    noisy_answers = [sign_in(proxy, unknown_key(), noisy).status_code for _ in range(21)]
    quiet_answer = sign_in(proxy, unknown_key(), quiet)
    valid_from_noisy = sign_in(proxy, tenant.admin_api_key, noisy)

    assert noisy_answers == [401] * 20 + [429]
    assert quiet_answer.status_code == 401  # another client behind the same proxy
    assert valid_from_noisy.status_code == 303


# --- Unauthenticated floods ------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "tally_short",
        "not a key \u00e9",
        "tally_" + "A" * 42 + "!",
        "tally_" + "A" * 44,
        "TALLY_" + "A" * 43,
        "tally_" + "A" * 42 + "\x00",
    ],
    ids=["short", "no-prefix", "bad-character", "too-long", "wrong-prefix", "nul"],
)
def test_a_malformed_key_is_refused_401_without_a_single_sql_statement(
    make_app: MakeApp, key: str
) -> None:
    app = make_app()
    client = client_at(app, loopback())

    with counting_sql(app) as statements:
        answer = client.get("/api/v1/assets", headers={"Authorization": f"Bearer {key}"})

    assert answer.status_code == 401 and answer.json["code"] == "invalid_api_key"
    assert statements == []


def test_a_malformed_key_at_the_console_sign_in_runs_no_sql(make_app: MakeApp) -> None:
    app = make_app()
    client = client_at(app, loopback())
    form = client.get("/console/login")

    with counting_sql(app) as statements:
        answer = client.post(
            "/console/login", data={"api_key": "tally_short", "csrf_token": csrf_of(form)}
        )

    assert answer.status_code == 401
    assert statements == []


def test_keys_are_issued_in_the_well_formed_shape(tenant: TenantFixture) -> None:
    assert well_formed_api_key(tenant.api_key)
    assert well_formed_api_key(tenant.admin_api_key)
    assert not well_formed_api_key(tenant.api_key + "x")
    assert not well_formed_api_key(tenant.api_key[:-1])


def test_past_the_auth_failure_limit_an_address_gets_429_before_any_database_work(
    make_app: MakeApp, tenant: TenantFixture
) -> None:
    app = make_app(auth_failures_per_minute=3, trusted_proxies=1)
    hold_clocks_still(app)
    proxy = client_at(app, PROXY)
    flooder, other = {"X-Forwarded-For": loopback()}, {"X-Forwarded-For": loopback()}

    failures = [
        proxy.get("/api/v1/assets", headers=bearer(unknown_key(), **flooder)) for _ in range(3)
    ]
    with counting_sql(app) as statements:
        refused = proxy.get("/api/v1/assets", headers=bearer(unknown_key(), **flooder))
        refused_valid = proxy.get("/api/v1/assets", headers=bearer(tenant.api_key, **flooder))
    other_valid = proxy.get("/api/v1/assets", headers=bearer(tenant.api_key, **other))
    other_wrong = proxy.get("/api/v1/assets", headers=bearer(unknown_key(), **other))

    assert [f.status_code for f in failures] == [401, 401, 401]
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.json["code"] == "too_many_auth_failures"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == '"auth-failures";q=3;w=60'
    # A key this process has not seen lately is not looked up from there either.
    assert refused_valid.status_code == 429
    assert statements == []
    assert other_valid.status_code == 200
    assert other_wrong.status_code == 401


def test_a_second_client_still_authenticates_when_one_address_is_over_the_limit(
    make_app: MakeApp, tenant: TenantFixture
) -> None:
    app = make_app(auth_failures_per_minute=2)
    hold_clocks_still(app)
    flooder, other = client_at(app, loopback()), client_at(app, loopback())

    statuses = [
        flooder.get("/api/v1/assets", headers=bearer(unknown_key())).status_code for _ in range(3)
    ]
    answer = other.get("/api/v1/assets", headers=bearer(tenant.api_key))

    assert statuses == [401, 401, 429]
    assert answer.status_code == 200


def test_a_valid_key_the_process_has_cached_still_passes_from_an_over_limit_address(
    make_app: MakeApp, tenant: TenantFixture
) -> None:
    app = make_app(auth_failures_per_minute=2)
    hold_clocks_still(app)
    cache = app.extensions["tally"].keys
    client = client_at(app, loopback())
    cache.get("")  # starts the cache's listener
    assert cache._listening.wait(10), "the key cache never started listening"
    assert client.get("/api/v1/assets", headers=bearer(tenant.api_key)).status_code == 200

    for _ in range(2):
        assert client.get("/api/v1/assets", headers=bearer(unknown_key())).status_code == 401
    with counting_sql(app) as statements:
        cached = client.get("/api/v1/assets", headers=bearer(tenant.api_key))
        uncached = client.get("/api/v1/assets", headers=bearer(tenant.admin_api_key))

    assert cached.status_code == 200
    assert uncached.status_code == 429
    # The cached key's request ran its view (one read of assets), no key lookup.
    assert not any("tally_authenticate" in statement for statement in statements)
