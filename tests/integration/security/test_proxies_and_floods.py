"""Behind a TLS proxy (TALLY_TRUSTED_PROXIES): the session cookie is Secure when the
browser's request was HTTPS, and per-address limits count the client the proxy names (only
a trusted proxy may name one)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import TenantFixture
from tests.integration.console.conftest import csrf_of

STILL = 1_800_000_000.25  # a quarter past some second
PROXY = "127.0.0.1"

MakeApp = Callable[..., Flask]


def hold_clocks_still(app: Flask) -> None:
    """Every request of the test falls in one window: the counts are exact."""
    context = app.extensions["tally"]
    context.limiter._clock = lambda: STILL


def loopback() -> str:
    """A loopback address of this test's own, so no other test's counts reach it."""
    return "127." + ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))


def client_at(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def unknown_key() -> str:
    return "tally_" + secrets.token_urlsafe(32)


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
    app = make_app()
    hold_clocks_still(app)
    peer = loopback()
    client = client_at(app, peer)

    signed_in = sign_in(client, tenant.admin_api_key, {"X-Forwarded-Proto": "https"})
    # Each failure claims another client address: all of them are the peer's.
    console_failures = [
        sign_in(client, unknown_key(), {"X-Forwarded-For": loopback()}).status_code
        for _ in range(21)
    ]

    assert "Secure" not in session_cookie(signed_in)
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
