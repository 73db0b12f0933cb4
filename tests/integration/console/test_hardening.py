"""The console against hostile input: text PostgreSQL cannot store, forged or empty CSRF
tokens, a flood of wrong keys from an operator's address, a key past its rate limit."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest
from flask import Flask
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from ledger.db import unit_of_work
from ledger.tenants import set_rate_limit
from ledger.webhooks.endpoints import create_endpoint
from tests.conftest import TenantFixture, secret_box
from tests.integration.console.conftest import Console, applied, csrf_of

# Apps with settings of their own, closed after each test.
from tests.integration.security.conftest import make_app  # noqa: F401

STILL = 1_800_000_000.25  # a quarter past some second

NUL = "\x00"

# Every console page that takes a filter in its query string, with the filter.
FILTERS = [
    ("/transactions", "q"),
    ("/transactions", "user_id"),
    ("/transactions", "code"),
    ("/transactions", "cursor"),
    ("/transactions", "from"),
    ("/wallets", "user_id"),
    ("/wallets/alice", "asset"),
    ("/wallets/alice", "cursor"),
    ("/webhooks/{endpoint}", "status"),
    ("/webhooks/{endpoint}", "cursor"),
    ("/audit", "action"),
    ("/audit", "cursor"),
    ("/login", "next"),
]
# Every console form with a field of its own (beside the CSRF token), with the field.
FORMS = [
    ("/wallets/alice/EUR/freeze", "reason"),
    ("/keys", "scope"),
    ("/webhooks/{endpoint}/recover", "since"),
]


@pytest.fixture
def endpoint_id(engine: Engine, tenant: TenantFixture) -> str:
    with unit_of_work(engine) as work:
        made = create_endpoint(
            work, tenant.id, box=secret_box(), url="http://127.0.0.1:9/hooks", allow_private=True
        )
    return str(made["id"])


@pytest.fixture
def alice(engine: Engine, tenant: TenantFixture) -> None:
    applied(engine, tenant.id, "topup", user_id="alice", amount=500)


def assert_invalid_input(page) -> None:
    assert page.status_code == 422, (page.status_code, page.get_data(as_text=True)[:500])
    assert page.mimetype == "text/html"
    body = page.get_data(as_text=True)
    assert "invalid_input" in body and "Traceback" not in body


@pytest.mark.parametrize(("path", "name"), FILTERS, ids=[f"{p}?{n}" for p, n in FILTERS])
def test_a_filter_with_nul_is_refused_422_on_every_console_page(
    admin: Console, alice: None, endpoint_id: str, path: str, name: str
) -> None:
    page = admin.get(path.format(endpoint=endpoint_id), query_string={name: f"a{NUL}b"})

    assert_invalid_input(page)


@pytest.mark.parametrize(("path", "name"), FORMS, ids=[f"{p}:{n}" for p, n in FORMS])
def test_a_form_field_with_nul_is_refused_422_and_changes_nothing(
    admin: Console, alice: None, endpoint_id: str, path: str, name: str
) -> None:
    answer = admin.post(path.format(endpoint=endpoint_id), {name: f"a{NUL}b"})

    assert_invalid_input(answer)
    assert 'id="unfreeze"' not in admin.text("/wallets/alice")  # not frozen


def test_a_path_segment_with_nul_is_refused_422(admin: Console, alice: None) -> None:
    assert_invalid_input(admin.get("/wallets/a%00b"))
    assert_invalid_input(admin.post("/wallets/alice/E%00UR/freeze", {"reason": "fraud"}))


@pytest.mark.parametrize(
    "request_",
    [
        lambda c: c.get("/transactions?q=a%ED%A0%80b"),
        lambda c: c.get("/audit?action=a%ED%A0%80b"),
        lambda c: c.client.post(
            "/console/wallets/alice/EUR/freeze",
            data=f"csrf_token={c.csrf}&reason=a%ED%A0%80b",
            content_type="application/x-www-form-urlencoded",
        ),
    ],
    ids=["transactions", "audit", "freeze"],
)
def test_a_surrogate_encoded_in_a_query_or_form_never_breaks_a_page(
    admin: Console, alice: None, request_: Callable[[Console], TestResponse]
) -> None:
    # Werkzeug never decodes these bytes to an unpaired surrogate (the gate would refuse
    # one, 422): whatever reaches the view is text PostgreSQL can store.
    answer = request_(admin)

    assert answer.status_code < 500


def test_a_sign_in_form_with_nul_is_refused_422(console: Console) -> None:
    form = console.get("/login")
    answer = console.client.post(
        "/console/login", data={"api_key": f"tally_{NUL}", "csrf_token": csrf_of(form)}
    )

    assert_invalid_input(answer)


def test_the_sign_in_form_refuses_an_empty_csrf_token_without_a_login_cookie(
    console: Console, tenant: TenantFixture
) -> None:
    answer = console.client.post(
        "/console/login", data={"api_key": tenant.admin_api_key, "csrf_token": ""}
    )

    assert answer.status_code == 403
    assert "csrf_token_invalid" in answer.get_data(as_text=True)
    assert console.get("/").status_code == 303


def test_a_session_form_refuses_an_empty_csrf_token(admin: Console, alice: None) -> None:
    answer = admin.post("/wallets/alice/EUR/freeze", {"reason": "fraud"}, csrf="")

    assert answer.status_code == 403
    assert 'id="unfreeze"' not in admin.text("/wallets/alice")


def test_a_valid_key_signs_in_after_20_failures_from_the_same_address(
    app: Flask, tenant: TenantFixture
) -> None:
    # An address of this test's own: no other test's (or run's) failures count here.
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"127.{secrets.randbelow(250)}.{secrets.randbelow(250)}.7"
    console = Console(client)
    unknown = "tally_" + secrets.token_urlsafe(32)

    failures = [console.sign_in(unknown).status_code for _ in range(41)]
    signed_in = console.sign_in(tenant.admin_api_key)

    # 20 failures a minute: the 21st is refused, or, had the minute turned, the 41st.
    assert failures[:20] == [401] * 20 and 429 in failures
    assert signed_in.status_code == 303
    assert console.get("/").status_code == 200


def test_console_requests_spend_the_keys_rate_limit_and_answer_429_past_it(
    make_app: Callable[..., Flask],  # noqa: F811
    engine: Engine,
    tenant: TenantFixture,
) -> None:
    app = make_app()
    # A clock held still: every request falls in one window, the counts are exact.
    app.extensions["tally"].limiter._clock = lambda: STILL
    with unit_of_work(engine) as work:
        set_rate_limit(work, tenant.id, 3)
    client = app.test_client()
    form = client.get("/console/login")
    signed_in = client.post(
        "/console/login", data={"api_key": tenant.admin_api_key, "csrf_token": csrf_of(form)}
    )
    assert signed_in.status_code == 303  # the sign-in pages spend none of it

    answers = [client.get("/console/transactions", query_string={"q": "x"}) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"per-key";q=3;w=1'
    refused = answers[3]
    assert refused.headers["Retry-After"] == "1"
    assert refused.mimetype == "text/html" and "rate_limited" in refused.get_data(as_text=True)
