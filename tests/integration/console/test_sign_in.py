"""Signing in and out of the console, the session cookie, and how a session ends."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import Engine, text

from ledger.db import unit_of_work
from tests.conftest import WEBHOOK_SECRET_KEYS, TenantFixture
from tests.integration.console.conftest import Console, csrf_of


def test_a_page_without_a_session_sends_the_browser_to_sign_in(console: Console) -> None:
    page = console.get("/transactions?status=failed")

    assert page.status_code == 303
    assert page.headers["Location"].startswith("/console/login?next=")


def test_signing_in_sets_a_strict_http_only_session_cookie_and_opens_the_overview(
    console: Console, tenant: TenantFixture
) -> None:
    answer = console.sign_in(tenant.admin_api_key)

    assert answer.status_code == 303 and answer.headers["Location"] == "/console/"
    cookie = next(
        value
        for value in answer.headers.getlist("Set-Cookie")
        if value.startswith("tally_console=")
    )
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here; HTTPS adds it
    assert 'id="stats-hour"' in console.text("/")


def test_signing_in_returns_to_the_page_asked_for_but_never_to_another_site(
    console: Console, tenant: TenantFixture
) -> None:
    form = console.get("/login?next=/console/webhooks")
    back = console.client.post(
        "/console/login",
        data={"api_key": tenant.api_key, "csrf_token": csrf_of(form), "next": "/console/webhooks"},
    )
    elsewhere = console.client.post(
        "/console/login",
        data={
            "api_key": tenant.api_key,
            "csrf_token": csrf_of(console.get("/login")),
            "next": "//evil.example/console/",
        },
    )

    assert back.headers["Location"] == "/console/webhooks"
    assert elsewhere.headers["Location"] == "/console/"


def test_a_wrong_key_is_refused_401_and_opens_no_session(console: Console) -> None:
    answer = console.sign_in("tally_not-a-key")

    assert answer.status_code == 401
    assert "unknown or revoked" in answer.get_data(as_text=True)
    assert console.get("/").status_code == 303


def test_the_sign_in_form_needs_its_own_csrf_token(console: Console, tenant: TenantFixture) -> None:
    console.get("/login")
    answer = console.client.post(
        "/console/login", data={"api_key": tenant.admin_api_key, "csrf_token": "forged"}
    )

    assert answer.status_code == 403
    assert console.get("/").status_code == 303


def test_signing_out_ends_the_session_for_good(admin: Console) -> None:
    cookie = admin.client.get_cookie("tally_console", path="/console")
    assert cookie is not None

    assert admin.post("/logout").status_code == 303
    # A copy of the old cookie is worth nothing now.
    admin.client.set_cookie("tally_console", cookie.value, path="/console")
    assert admin.get("/").status_code == 303


@pytest.mark.parametrize(
    "aged",
    [
        "last_seen_at = now() - interval '31 minutes'",  # idle past TALLY_CONSOLE_IDLE_SECONDS
        "created_at = now() - interval '13 hours'",  # busy, but past TALLY_CONSOLE_MAX_SECONDS
    ],
    ids=["idle", "past-its-maximum-age"],
)
def test_an_idle_or_too_old_session_expires(
    admin: Console, engine: Engine, tenant: TenantFixture, aged: str
) -> None:
    with unit_of_work(engine) as work:
        work.connection.execute(
            text(f"UPDATE console_sessions SET {aged} WHERE tenant_id = :t"), {"t": tenant.id}
        )

    assert admin.get("/").status_code == 303


def test_revoking_the_key_ends_its_sessions(
    admin: Console, engine: Engine, tenant: TenantFixture
) -> None:
    assert admin.get("/").status_code == 200
    with unit_of_work(engine) as work:
        key_id = work.connection.execute(
            text("SELECT api_key_id FROM console_sessions WHERE tenant_id = :t"), {"t": tenant.id}
        ).scalar_one()
        from ledger.audit import OPERATOR
        from ledger.keys import revoke_api_key

        revoke_api_key(work, tenant.id, key_id, actor=OPERATOR)

    assert admin.get("/").status_code == 303


def test_pages_carry_a_strict_content_security_policy_and_no_script(admin: Console) -> None:
    page = admin.get("/")

    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # nothing may run at all
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script" not in page.get_data(as_text=True)


def test_the_stylesheet_is_served_by_tally_itself(admin: Console) -> None:
    page = admin.get("/")
    sheet = admin.get("/static/console.css")

    assert 'href="/console/static/console.css"' in page.get_data(as_text=True)
    assert sheet.status_code == 200 and sheet.mimetype == "text/css"
    assert "http" not in page.get_data(as_text=True).split("<main>")[0].replace("http-equiv", "")


def test_failed_sign_ins_from_one_address_are_throttled_but_a_valid_key_still_signs_in(
    app, tenant: TenantFixture
) -> None:
    from tests.integration.console.conftest import Console

    # An address of this test's own: no other test's (or run's) failures count here.
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"127.{secrets.randbelow(250)}.{secrets.randbelow(250)}.9"
    console = Console(client)
    for _ in range(5):
        assert console.sign_in(tenant.admin_api_key).status_code == 303
    answers = [console.sign_in("tally_wrong").status_code for _ in range(41)]

    # 20 failures a minute: the 21st attempt is refused, or, had the minute turned during
    # the test, at the latest the 41st.
    assert answers[:20] == [401] * 20
    assert 429 in answers and set(answers) == {401, 429}
    refused = console.client.post(
        "/console/login",
        data={"api_key": "tally_wrong", "csrf_token": csrf_of(console.get("/login"))},
    )
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "failed sign-ins from this address" in refused.get_data(as_text=True)
    # The key is checked first: a valid one is never refused for its address's failures.
    assert console.sign_in(tenant.admin_api_key).status_code == 303


def test_with_the_database_down_pages_answer_503_with_retry_after_not_a_stack_trace(
    redis_url: str,
) -> None:
    import socket
    import uuid

    from api.app import create_app
    from config.settings import Settings

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(
        Settings(
            webhook_secret_keys=WEBHOOK_SECRET_KEYS,
            database_url=f"postgresql://postgres@127.0.0.1:{port}/tally",
            broker_url=redis_url,
            queue=f"tally-test-console-{uuid.uuid4().hex[:10]}",
        )
    )
    try:
        client = app.test_client()
        client.set_cookie("tally_console", "a-session-token", path="/console")
        page = client.get("/console/")
        form = client.get("/console/login")
        signing_in = client.post(
            "/console/login",
            # Well formed: a malformed key is refused before any database work.
            data={"api_key": "tally_" + secrets.token_urlsafe(32), "csrf_token": csrf_of(form)},
        )
    finally:
        context = app.extensions["tally"]
        context.waiter.close()
        context.keys.close()
        context.engine.dispose()

    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert page.mimetype == "text/html" and "database_unavailable" in page.get_data(as_text=True)
    assert "Traceback" not in page.get_data(as_text=True)
    assert signing_in.status_code == 503
