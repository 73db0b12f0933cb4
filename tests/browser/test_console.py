"""The operator console in a real browser, against a real API, worker, relay and receiver."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from tally.webhook_receiver import WebhookReceiver
from tests.browser.conftest import SESSION_COOKIE, Console
from tests.conftest import TenantFixture
from tests.support.faults import refusing_credits
from tests.support.stack import ApiClient, Stack, submit_concurrently

# Chromium first: without it the module skips (or fails in CI) before starting a stack.
# Then every test's transactions have webhooks, to the module's endpoint.
pytestmark = pytest.mark.usefixtures("chromium", "endpoint")

REFUSED_CREDIT = 1000
FINAL = {"applied", "rejected", "failed"}
# The API's long-poll can sleep through the wake-up of a transaction that finishes while
# it reads the status (api/server.py clears the event after the read): short long-polls
# bound what a missed wake-up costs a test.
POLL_SECONDS = 2
OUTCOME_SECONDS = 30.0


@pytest.fixture
def writer(stack: Stack, tenant: TenantFixture) -> ApiClient:
    return stack.client(tenant.api_key)


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def transaction(user_id: str, amount: int, reference_id: str = "") -> dict[str, Any]:
    return {
        "user_id": user_id,
        "asset_code": "EUR",
        "amount": amount,
        "reference_id": reference_id or uuid.uuid4().hex,
    }


def submit(client: ApiClient, kind: str, user_id: str, amount: int, reference_id: str = "") -> str:
    response = client.post(f"/wallets/{kind}", transaction(user_id, amount, reference_id))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def outcome(client: ApiClient, transaction_id: str) -> dict[str, Any]:
    """The transaction's status view once it is final; fails the test after a while."""
    deadline = time.monotonic() + OUTCOME_SECONDS
    while True:
        response = client.get(f"/transactions/{transaction_id}", params={"wait": POLL_SECONDS})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in FINAL:
            return body
        assert time.monotonic() < deadline, f"not final after {OUTCOME_SECONDS:.0f}s: {body}"


def applied(client: ApiClient, kind: str, user_id: str, amount: int, reference_id: str = "") -> str:
    transaction_id = submit(client, kind, user_id, amount, reference_id)
    assert outcome(client, transaction_id)["status"] == "applied"
    return transaction_id


def settle(stack: Stack, api_key: str, calls: list[tuple[str, str, int]]) -> None:
    """Submit (kind, user, amount) calls all at once and wait until each is final."""
    bodies = [(f"/wallets/{kind}", transaction(user, amount)) for kind, user, amount in calls]
    responses = submit_concurrently(stack.base_url, api_key, bodies, threads=len(calls))
    client = stack.client(api_key)
    for response in responses:
        assert response.status_code == 202, response.text
        outcome(client, response.json()["id"])


def wallet_status(client: ApiClient, user_id: str) -> str:
    response = client.get(f"/wallets/{user_id}/balance", params={"asset_code": "EUR"})
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def failed_topup(engine: Engine, client: ApiClient) -> tuple[str, str]:
    """A top-up the worker failed on (its one attempt hit a system fault, since fixed):
    its id and its user."""
    user_id = new_user()
    with refusing_credits(engine, user_id, REFUSED_CREDIT):
        transaction_id = submit(client, "topup", user_id, REFUSED_CREDIT)
        failed = outcome(client, transaction_id)
    assert (failed["status"], failed["result"]["code"]) == ("failed", "processing_failed")
    return transaction_id, user_id


def error_code(response: requests.Response) -> str:
    """The code a console error page names."""
    found = re.search(r'<code id="error-code">([^<]*)</code>', response.text)
    assert found, f"not a console error page: {response.status_code} {response.text[:200]}"
    return found.group(1)


def wait_for_webhook(receiver: WebhookReceiver, transaction_id: str) -> None:
    """Until the receiver has taken the transaction's webhook (the relay sends it)."""

    def taken() -> bool:
        return any(r.payload["data"]["id"] == transaction_id for r in receiver.delivered("console"))

    receiver.wait_until(taken, what=f"the webhook of {transaction_id}")


def forged_post(console: Console, path: str, **form: str) -> requests.Response:
    """POST a form the page did not offer, as the signed-in browser would: with its session
    cookie and its page's CSRF token."""
    return requests.post(
        console.url(path),
        data={"csrf_token": console.csrf_token(), **form},
        cookies={SESSION_COOKIE: console.session_cookie()},
        allow_redirects=False,
        timeout=10,
    )


def test_an_admin_key_signs_in_and_a_wrong_key_does_not(console: Console, tenant):
    console.visit("/transactions")
    assert console.path == "/console/login"
    console.screenshot("login")

    console.fill("form#login input[name=api_key]", "tally_not-a-key")
    console.click("button#sign-in")
    assert console.path == "/console/login"
    assert console.has("p.error")
    assert console.browser.get_cookie(SESSION_COOKIE) is None
    console.fill("form#login input[name=api_key]", tenant.admin_api_key)
    console.click("button#sign-in")

    assert console.path == "/console/transactions"  # where the browser was sent from
    assert console.text("span#whoami").endswith("(admin)")
    cookie = console.browser.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")
    for nav in ("overview", "transactions", "wallets", "webhooks", "keys", "audit"):
        assert console.has(f"a#nav-{nav}"), nav


def test_the_overview_counts_the_hours_transactions_and_deliveries(
    console: Console, stack: Stack, fresh_tenant, receiver: WebhookReceiver
):
    key = fresh_tenant.admin_api_key
    register = stack.client(key).post("/webhook-endpoints", {"url": receiver.url("overview")})
    assert register.status_code == 201, register.text
    users = [new_user() for _ in range(4)]
    settle(stack, key, [("topup", user, 1000) for user in users])
    settle(stack, key, [("spend", user, 300) for user in users] + [("spend", users[0], 5000)] * 2)
    receiver.wait_for_count("overview", 10)

    console.sign_in(fresh_tenant.admin_api_key)
    console.reload_until("section#stats-hour td.deliveries-delivered", "10")

    hour = {
        status: console.text(f"section#stats-hour td.{status}")
        for status in ("submitted", "applied", "rejected", "failed", "queued")
    }
    assert hour == {
        "submitted": "10",
        "applied": "8",
        "rejected": "2",
        "failed": "0",
        "queued": "0",
    }
    assert "insufficient_funds" in console.text("section#stats-hour table.codes")
    assert console.text("span#queue-depth") == "0"
    for chart in ("applied", "latency", "rejections"):
        assert console.has(f"svg#chart-{chart}"), chart
    console.screenshot("overview")


def test_a_transaction_found_by_reference_id_shows_its_entries_and_deliveries(
    console: Console, tenant, writer, receiver: WebhookReceiver
):
    user_id = new_user()
    reference_id = f"order-{uuid.uuid4().hex[:8]}"
    applied(writer, "topup", user_id, 700)
    transaction_id = applied(writer, "spend", user_id, 250, reference_id)
    wait_for_webhook(receiver, transaction_id)
    console.sign_in(tenant.admin_api_key)

    console.click("a#nav-transactions")
    console.fill("form#search input[name=q]", reference_id)
    console.press_enter("form#search input[name=q]")
    rows = console.find_all("tr.transaction")
    assert len(rows) == 1
    assert reference_id in rows[0].text
    console.screenshot("transactions")
    console.click("tr.transaction a.transaction-link")

    assert console.path == f"/console/transactions/{transaction_id}"
    assert console.text("span#status") == "applied"
    assert reference_id in console.text("dl#request")
    assert len(console.find_all("table#entries tr.entry")) == 2
    assert console.has("table#events tr.event")
    console.reload_until("section#deliveries div.delivery .badge", "delivered")
    assert console.has("section#deliveries tr.attempt")
    console.screenshot("transaction")


def test_the_webhook_endpoint_page_lists_the_endpoints_deliveries(
    console: Console, tenant, writer, endpoint, receiver: WebhookReceiver
):
    transaction_id = applied(writer, "topup", new_user(), 300)
    wait_for_webhook(receiver, transaction_id)
    console.sign_in(tenant.admin_api_key)

    console.click("a#nav-webhooks")
    assert endpoint["url"] in console.text("table#endpoints tr.endpoint")
    console.screenshot("webhooks")
    console.click("table#endpoints a.endpoint-link")

    assert console.path == f"/console/webhooks/{endpoint['id']}"
    assert console.has("table#deliveries tr.delivery")
    for form in ("delivery-filter", "send-test", "recover", "rotate-secret"):
        assert console.has(f"form#{form}"), form
    assert console.has("form.redeliver")
    console.screenshot("webhook-endpoint")


def test_a_failed_transaction_requeued_from_the_console_is_applied(
    console: Console, tenant, writer, engine: Engine
):
    transaction_id, user_id = failed_topup(engine, writer)
    console.sign_in(tenant.admin_api_key)
    console.visit(f"/transactions/{transaction_id}")
    assert console.text("span#status") == "failed"
    assert console.text("span#result-code") == "processing_failed"
    console.screenshot("transaction-failed")

    console.click("form#requeue button#requeue-button")

    assert console.has("p.notice")
    console.reload_until("span#status", "applied")
    balance = writer.get(f"/wallets/{user_id}/balance", params={"asset_code": "EUR"}).json()
    assert balance["balance"] == REFUSED_CREDIT


def test_a_wallet_frozen_through_the_console_rejects_a_spend(console: Console, tenant, writer):
    user_id = new_user()
    applied(writer, "topup", user_id, 900)
    console.sign_in(tenant.api_key)  # a write key may freeze
    console.visit(f"/wallets?user_id={user_id}")  # what the wallet search form sends
    assert console.path == f"/console/wallets/{user_id}"
    wallet = 'table#balances tr.wallet[data-asset="EUR"]'
    assert console.text(f"{wallet} td.status") == "active"
    console.click(f"{wallet} a.freeze-link")

    assert console.path == f"/console/wallets/{user_id}/EUR/freeze"
    console.fill("form#confirm textarea[name=reason]", "chargeback under review")
    console.screenshot("wallet-freeze")
    console.click("button#confirm-button")

    assert console.path == f"/console/wallets/{user_id}"
    assert console.has("p.notice")
    assert console.text(f"{wallet} td.status") == "frozen"
    assert "chargeback under review" in console.text("table#wallet-audit")
    console.screenshot("wallet")
    console.click("a#nav-audit")
    assert "chargeback under review" in console.text("table#audit")
    console.screenshot("audit")
    spend = outcome(writer, submit(writer, "spend", user_id, 100))
    assert (spend["status"], spend["result"]["code"]) == ("rejected", "wallet_frozen")
    assert wallet_status(writer, user_id) == "frozen"


def test_a_read_key_sees_no_actions_and_a_forged_freeze_is_refused(
    console: Console, tenant, writer, engine: Engine, endpoint
):
    failed_id, _ = failed_topup(engine, writer)
    user_id = new_user()
    applied(writer, "topup", user_id, 400)
    console.sign_in(tenant.read_api_key)
    assert console.text("span#whoami").endswith("(read)")
    assert not console.has("a#nav-keys")

    console.visit(f"/transactions/{failed_id}")
    assert console.text("span#status") == "failed"
    assert not console.has("form#requeue")
    console.visit(f"/wallets/{user_id}")
    console.find("table#balances")
    for link in ("freeze", "unfreeze", "close"):
        assert not console.has(f"a.{link}-link"), link
    console.visit(f"/webhooks/{endpoint['id']}")
    console.find("table#deliveries")
    for form in ("send-test", "recover", "rotate-secret", "enable", "disable"):
        assert not console.has(f"form#{form}"), form
    assert not console.has("form.redeliver")

    forged = forged_post(console, f"/wallets/{user_id}/EUR/freeze", reason="forged")
    keys_page = requests.get(
        console.url("/keys"), cookies={SESSION_COOKIE: console.session_cookie()}, timeout=10
    )

    assert (forged.status_code, error_code(forged)) == (403, "write_key_required")
    assert (keys_page.status_code, error_code(keys_page)) == (403, "admin_key_required")
    assert wallet_status(writer, user_id) == "active"


def test_another_tenants_transaction_is_not_found(
    console: Console, tenant, stack: Stack, fresh_tenant
):
    theirs = submit(stack.client(fresh_tenant.api_key), "topup", new_user(), 100)
    console.sign_in(tenant.read_api_key)

    console.visit(f"/transactions/{theirs}")

    assert console.text("h1") == "Not found"
    assert not console.has("span#status")
    console.visit(f"/transactions?q={theirs}")
    assert console.has("p#no-results")


def test_a_post_without_the_sessions_csrf_token_is_refused(console: Console, tenant, writer):
    user_id = new_user()
    applied(writer, "topup", user_id, 400)
    console.sign_in(tenant.api_key)
    console.visit(f"/wallets/{user_id}")
    path = f"/wallets/{user_id}/EUR/freeze"
    session = {SESSION_COOKIE: console.session_cookie()}

    def post(form: dict[str, str]) -> requests.Response:
        return requests.post(
            console.url(path), data=form, cookies=session, allow_redirects=False, timeout=10
        )

    missing = post({"reason": "no token"})
    wrong = post({"reason": "wrong token", "csrf_token": secrets.token_urlsafe(32)})
    refused = [(r.status_code, error_code(r)) for r in (missing, wrong)]
    assert refused == [(403, "csrf_token_invalid")] * 2
    assert wallet_status(writer, user_id) == "active"
    # The same POST with the page's token is the write key's to make: the refusals above
    # were the token's doing.
    assert forged_post(console, path, reason="with the token").status_code == 303
    assert wallet_status(writer, user_id) == "frozen"


def test_an_admin_creates_a_read_key_that_reads_but_cannot_submit(
    console: Console, tenant, writer, stack: Stack
):
    user_id = new_user()
    applied(writer, "topup", user_id, 100)
    console.sign_in(tenant.admin_api_key)
    console.click("a#nav-keys")
    assert len(console.find_all("table#keys tr.key")) >= 3
    console.screenshot("keys")

    console.choose("form#create-key select[name=scope]", "read")
    console.click("form#create-key button[type=submit]")

    reader = stack.client(console.text("code#new-key"))
    assert wallet_status(reader, user_id) == "active"
    topup = {"user_id": user_id, "asset_code": "EUR", "amount": 1, "reference_id": "by-reader"}
    assert reader.post("/wallets/topup", topup).status_code == 403


def test_after_signing_out_the_console_sends_the_browser_to_sign_in(console: Console, tenant):
    console.sign_in(tenant.admin_api_key)
    cookie = console.session_cookie()

    console.click("form#sign-out button#sign-out-button")
    console.find("form#login")
    console.visit("/")

    assert console.path == "/console/login"
    assert console.has("form#login")
    # The old cookie is dead on the server too, not just gone from this browser.
    replayed = requests.get(
        console.url("/"), cookies={SESSION_COOKIE: cookie}, allow_redirects=False, timeout=10
    )
    assert replayed.status_code == 303
    assert replayed.headers["Location"].endswith("/console/login")
