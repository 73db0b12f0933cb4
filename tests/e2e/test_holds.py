"""Two-phase holds over HTTP, once per broker: API → broker → worker → PostgreSQL, and the
relay that expires holds and delivers their webhooks.

A hold reserves funds, a capture takes all or part of them, a void or expiry releases
them; each only once, with a stable code when refused. Time-bound tests wait on what can
be observed (the database clock passing a hold's `expires_at`, a hold's status), never on
a bare sleep.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, text
from standardwebhooks.webhooks import Webhook

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.keys import issue_api_key
from ledger.tenants import create_tenant
from tally.webhook_receiver import WebhookReceiver
from tests.conftest import TenantFixture, assert_invariants
from tests.e2e.webhook_helpers import register
from tests.support.stack import ApiClient, Stack, outcome_of, submit_concurrently, wait_until

# How long the relay may take to expire a hold once it is due: its interval in the test
# stack is 0.5 s; the rest is slack for a loaded two-core machine.
SWEEP_DEADLINE = 10.0
# A relay just restarted first has to boot (imports, broker and database connections).
RESTART_DEADLINE = 20.0
# Holds that must still be held when something happens to them a moment later (a relay
# killed, a capture applied) get this long: a margin for a slow worker, not a wait.
SHORT_EXPIRY = 3

# --- helpers --------------------------------------------------------------------------------------


def ref() -> str:
    return uuid.uuid4().hex


def hold_body(user_id: str, amount: int, **fields: Any) -> dict[str, Any]:
    """A `POST /transactions` body for a EUR hold, with a fresh reference id."""
    base = {"type": "hold", "user_id": user_id, "asset_code": "EUR", "amount": amount}
    return {**base, "reference_id": ref(), **fields}


def action_body(kind: str, hold_id: str, **fields: Any) -> dict[str, Any]:
    """A capture or void of `hold_id`, with a fresh reference id."""
    return {"type": kind, "original_transaction_id": hold_id, "reference_id": ref(), **fields}


def settle(client: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    """Submit to `POST /transactions`, expect 202, and long-poll the outcome."""
    response = client.post("/transactions", body)
    assert response.status_code == 202, response.text
    return outcome_of(client, response.json()["id"])


def topup(client: ApiClient, user_id: str, amount: int) -> None:
    body = {"user_id": user_id, "asset_code": "EUR", "amount": amount, "reference_id": ref()}
    applied(settle(client, {"type": "topup", **body}))


def spend(client: ApiClient, user_id: str, amount: int) -> dict[str, Any]:
    body = {"user_id": user_id, "asset_code": "EUR", "amount": amount, "reference_id": ref()}
    return settle(client, {"type": "spend", **body})


def place_hold(client: ApiClient, user_id: str, amount: int, **fields: Any) -> dict[str, Any]:
    return settle(client, hold_body(user_id, amount, **fields))


def capture(client: ApiClient, hold_id: str, **fields: Any) -> dict[str, Any]:
    return settle(client, action_body("capture", hold_id, **fields))


def void(client: ApiClient, hold_id: str) -> dict[str, Any]:
    return settle(client, action_body("void", hold_id))


def applied(outcome: dict[str, Any]) -> dict[str, Any]:
    assert outcome["status"] == "applied", outcome
    assert outcome["result"] is None, outcome
    return outcome


def assert_rejected(outcome: dict[str, Any], code: str) -> None:
    assert outcome["status"] == "rejected", outcome
    assert outcome["result"]["code"] == code, outcome
    assert outcome["balance_after"] is None, outcome


def code_of(outcome: dict[str, Any]) -> tuple[str, str | None]:
    return outcome["status"], (outcome["result"] or {}).get("code")


def wallet(client: ApiClient, user_id: str) -> tuple[int, int, int]:
    """(balance, pending, available) of a EUR wallet."""
    response = client.get(f"/wallets/{user_id}/balance", params={"asset_code": "EUR"})
    assert response.status_code == 200, response.text
    found = response.json()
    return found["balance"], found["pending"], found["available"]


def transaction(client: ApiClient, transaction_id: str) -> dict[str, Any]:
    response = client.get(f"/transactions/{transaction_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def hold_state(client: ApiClient, hold_id: str) -> dict[str, Any]:
    """The `hold` part of a hold's transaction, as `GET /transactions/{id}` shows it."""
    state: dict[str, Any] = transaction(client, hold_id)["hold"]
    return state


def listed_holds(client: ApiClient, user_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/wallets/{user_id}/holds", params={"asset_code": "EUR", **params})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids_of(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


def all_in(client: ApiClient, holds: list[dict[str, Any]], status: str) -> bool:
    return all(hold_state(client, held["id"])["status"] == status for held in holds)


def past_expiry(engine: Engine, holds: list[dict[str, Any]]) -> bool:
    """Whether the database clock (the one intake and the sweeper judge by) has reached
    every hold's `expires_at`."""
    with engine.connect() as conn:
        due = conn.execute(
            text("SELECT bool_and(now() >= expires_at) FROM transactions WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(held["id"]) for held in holds]},
        ).scalar_one()
    return bool(due)


def stays(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Check `condition` over a bounded stretch of time: it must hold at every look."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition(), f"no longer true: {what}"
        time.sleep(0.05)  # observing a state that must not change, bounded by the deadline
    assert condition(), f"no longer true: {what}"


def set_wallet(client: ApiClient, user_id: str, path: str = "", **changes: Any) -> None:
    """Freeze (`path="/freeze"`), unfreeze, or PATCH a wallet (admin keys) with `changes`."""
    url = f"{client.base_url}/api/v1/wallets/{user_id}{path}"
    body = {"asset_code": "EUR", **changes}
    method = client.session.post if path else client.session.patch
    response: requests.Response = method(url, json=body, timeout=60)
    assert response.status_code == 200, response.text


def assert_replayed(response: requests.Response, outcome: dict[str, Any]) -> None:
    assert response.status_code == 200, response.text
    assert response.headers.get("Idempotent-Replayed") == "true"
    assert response.json() == outcome


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def client(stack: Stack, tenant: TenantFixture) -> ApiClient:
    return stack.client(tenant.api_key)


@pytest.fixture
def admin(stack: Stack, tenant: TenantFixture) -> ApiClient:
    return stack.client(tenant.admin_api_key)


@pytest.fixture
def stranger(engine: Engine) -> Iterator[TenantFixture]:
    """A second tenant with its own EUR asset and key."""
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, f"stranger-{uuid.uuid4().hex[:8]}")
        api_key = issue_api_key(work, tenant_id, "write")["api_key"]
        admin_key = issue_api_key(work, tenant_id, "admin")["api_key"]
        create_asset(work, tenant_id, "EUR", "Euro", 2)
    yield TenantFixture(tenant_id, api_key, admin_key)
    assert_invariants(engine, tenant_id)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


# --- every type's happy path ----------------------------------------------------------------------


def test_a_hold_reserves_funds_that_a_spend_cannot_use(client: ApiClient) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 300))

    assert held["type"] == "hold"
    assert held["balance_after"] is None
    assert held["hold"] == {
        "status": "held",
        "amount": 300,
        "captured_amount": None,
        "captured_by": None,
        "voided_by": None,
        "expires_at": held["expires_at"],
    }
    assert wallet(client, "alice") == (1000, 300, 700)
    assert_rejected(spend(client, "alice", 701), "insufficient_funds")
    applied(spend(client, "alice", 700))
    assert wallet(client, "alice") == (300, 300, 0)
    assert transaction(client, held["id"]) == held


def test_a_partial_capture_pays_the_destination_wallet_and_releases_the_rest(
    client: ApiClient,
) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 500, to_user_id="shop"))
    assert held["to_user_id"] == "shop"

    captured = applied(capture(client, held["id"], amount=120))

    assert (captured["user_id"], captured["to_user_id"]) == ("alice", "shop")
    assert captured["original_transaction_id"] == held["id"]
    assert (captured["amount"], captured["balance_after"], captured["to_balance_after"]) == (
        120,
        880,
        120,
    )
    assert wallet(client, "alice") == (880, 0, 880)
    assert wallet(client, "shop") == (120, 0, 120)
    state = hold_state(client, held["id"])
    assert (state["status"], state["amount"], state["captured_amount"]) == ("captured", 500, 120)
    assert (state["captured_by"], state["voided_by"]) == (captured["id"], None)


def test_a_full_capture_takes_the_whole_hold_and_can_be_refunded(client: ApiClient) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 400))

    captured = applied(capture(client, held["id"]))

    assert (captured["amount"], captured["balance_after"]) == (400, 600)
    assert wallet(client, "alice") == (600, 0, 600)
    assert hold_state(client, held["id"])["captured_amount"] == 400

    def refund(amount: int) -> dict[str, Any]:
        body = {"user_id": "alice", "asset_code": "EUR", "amount": amount, "reference_id": ref()}
        return settle(client, {"type": "refund", "original_transaction_id": captured["id"], **body})

    assert applied(refund(150))["balance_after"] == 750
    assert_rejected(refund(251), "refund_exceeds_original")
    assert applied(refund(250))["balance_after"] == 1000
    assert wallet(client, "alice") == (1000, 0, 1000)


def test_a_void_releases_the_whole_hold_and_moves_no_money(client: ApiClient) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 250, to_user_id="shop"))

    voided = applied(void(client, held["id"]))

    assert (voided["amount"], voided["original_transaction_id"]) == (250, held["id"])
    assert wallet(client, "alice") == (1000, 0, 1000)
    assert wallet(client, "shop") == (0, 0, 0)
    state = hold_state(client, held["id"])
    assert (state["status"], state["voided_by"], state["captured_amount"]) == (
        "voided",
        voided["id"],
        None,
    )
    # Neither the hold nor its void wrote a journal line: the top-up is alone in the history.
    history = client.get("/wallets/alice/transactions", params={"asset_code": "EUR"}).json()
    assert [item["type"] for item in history["items"]] == ["topup"]


def test_a_wallet_lists_its_holds_newest_first_filtered_by_status(client: ApiClient) -> None:
    topup(client, "alice", 1000)
    first, second, third = (applied(place_hold(client, "alice", n)) for n in (10, 20, 30))
    applied(capture(client, first["id"]))
    applied(void(client, second["id"]))

    everything = listed_holds(client, "alice")
    assert ids_of(everything) == [third["id"], second["id"], first["id"]]
    assert everything["next_cursor"] is None
    assert everything["items"][0] == transaction(client, third["id"])
    for status, expected in (
        ("held", [third]),
        ("captured", [first]),
        ("voided", [second]),
        ("expired", []),
    ):
        page = listed_holds(client, "alice", status=status)
        assert ids_of(page) == [h["id"] for h in expected], status
        assert {item["hold"]["status"] for item in page["items"]} <= {status}
    newest = listed_holds(client, "alice", limit=2)
    assert ids_of(newest) == [third["id"], second["id"]]
    rest = listed_holds(client, "alice", limit=2, cursor=newest["next_cursor"])
    assert (ids_of(rest), rest["next_cursor"]) == ([first["id"]], None)
    unknown = client.get("/wallets/nobody/holds", params={"asset_code": "EUR"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "wallet_not_found")


# --- every rejection code -------------------------------------------------------------------------


def test_a_capture_or_void_naming_no_hold_of_this_tenant_is_rejected_hold_not_found(
    stack: Stack, client: ApiClient, stranger: TenantFixture
) -> None:
    topup(client, "alice", 1000)
    a_spend = applied(spend(client, "alice", 5))
    theirs = stack.client(stranger.api_key)
    topup(theirs, "alice", 100)
    foreign = applied(place_hold(theirs, "alice", 10))

    for original in (str(uuid.uuid4()), a_spend["id"], foreign["id"]):
        for kind in ("capture", "void"):
            outcome = settle(client, action_body(kind, original))
            assert_rejected(outcome, "hold_not_found")

    assert wallet(theirs, "alice") == (100, 10, 90)
    assert hold_state(theirs, foreign["id"])["status"] == "held"
    assert wallet(client, "alice") == (995, 0, 995)


def test_a_hold_is_settled_once_then_captures_and_voids_are_hold_not_active(
    client: ApiClient,
) -> None:
    topup(client, "alice", 1000)
    captured_hold = applied(place_hold(client, "alice", 100))
    applied(capture(client, captured_hold["id"], amount=40))
    assert_rejected(capture(client, captured_hold["id"]), "hold_not_active")
    assert_rejected(void(client, captured_hold["id"]), "hold_not_active")

    voided_hold = applied(place_hold(client, "alice", 50))
    applied(void(client, voided_hold["id"]))
    assert_rejected(capture(client, voided_hold["id"]), "hold_not_active")
    assert_rejected(void(client, voided_hold["id"]), "hold_not_active")

    assert wallet(client, "alice") == (960, 0, 960)
    assert hold_state(client, captured_hold["id"])["captured_amount"] == 40


def test_a_capture_or_void_after_expiry_is_rejected_hold_expired(
    client: ApiClient, engine: Engine
) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 200, expires_in=1))

    wait_until(lambda: past_expiry(engine, [held]), timeout=10, what="the hold's expiry")
    assert_rejected(capture(client, held["id"]), "hold_expired")
    assert_rejected(void(client, held["id"]), "hold_expired")

    wait_until(
        lambda: all_in(client, [held], "expired"), SWEEP_DEADLINE, "the sweeper to release it"
    )
    assert wallet(client, "alice") == (1000, 0, 1000)


def test_a_capture_above_the_hold_is_rejected_capture_exceeds_hold(client: ApiClient) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 100))

    assert_rejected(capture(client, held["id"], amount=101), "capture_exceeds_hold")

    assert wallet(client, "alice") == (1000, 100, 900)
    assert hold_state(client, held["id"])["status"] == "held"
    assert applied(capture(client, held["id"], amount=100))["balance_after"] == 900


def test_a_hold_beyond_available_funds_is_rejected_insufficient_funds(client: ApiClient) -> None:
    topup(client, "alice", 100)
    applied(place_hold(client, "alice", 60))

    refused = place_hold(client, "alice", 41)

    assert_rejected(refused, "insufficient_funds")
    assert refused["hold"] is None
    assert wallet(client, "alice") == (100, 60, 40)
    applied(place_hold(client, "alice", 40))
    assert wallet(client, "alice") == (100, 100, 0)


def test_a_frozen_wallet_cannot_place_a_hold(client: ApiClient, admin: ApiClient) -> None:
    topup(client, "alice", 100)
    set_wallet(client, "alice", "/freeze")

    assert_rejected(place_hold(client, "alice", 10), "wallet_frozen")
    assert wallet(client, "alice") == (100, 0, 100)

    set_wallet(admin, "alice", "/unfreeze")
    applied(place_hold(client, "alice", 10))


def test_a_wallet_frozen_after_its_hold_refuses_the_capture_but_can_void_it(
    client: ApiClient,
) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 100))
    set_wallet(client, "alice", "/freeze")

    assert_rejected(capture(client, held["id"]), "wallet_frozen")
    assert hold_state(client, held["id"])["status"] == "held"
    assert wallet(client, "alice") == (1000, 100, 900)

    applied(void(client, held["id"]))
    assert hold_state(client, held["id"])["status"] == "voided"
    assert wallet(client, "alice") == (1000, 0, 1000)


def test_a_hold_on_an_unknown_wallet_is_rejected_wallet_not_found(client: ApiClient) -> None:
    assert_rejected(place_hold(client, "nobody", 5), "wallet_not_found")
    missing = client.get("/wallets/nobody/balance", params={"asset_code": "EUR"})
    assert missing.status_code == 404


def test_a_hold_on_or_paying_a_closed_wallet_is_rejected_wallet_closed(
    client: ApiClient, admin: ApiClient
) -> None:
    topup(client, "alice", 100)
    topup(client, "bob", 100)
    set_wallet(admin, "alice", status="closed")

    assert_rejected(place_hold(client, "alice", 10), "wallet_closed")
    assert_rejected(place_hold(client, "bob", 10, to_user_id="alice"), "wallet_closed")
    assert wallet(client, "bob") == (100, 0, 100)


def test_a_hold_paying_its_own_wallet_is_refused_at_intake_with_422(client: ApiClient) -> None:
    topup(client, "alice", 100)
    body = hold_body("alice", 10, to_user_id="alice")

    response = client.post("/transactions", body)

    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "same_wallet"
    assert "to_user_id" in problem["errors"]
    recorded = client.get("/transactions", params={"reference_id": body["reference_id"]})
    assert recorded.status_code == 404
    assert wallet(client, "alice") == (100, 0, 100)


# --- concurrency ----------------------------------------------------------------------------------


def test_fifty_concurrent_captures_of_one_hold_apply_exactly_one(
    stack: Stack, tenant: TenantFixture, client: ApiClient
) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 400))
    calls = [("/transactions", action_body("capture", held["id"])) for _ in range(50)]

    responses = submit_concurrently(stack.base_url, tenant.api_key, calls)

    assert [r.status_code for r in responses] == [202] * 50, {r.text for r in responses}
    outcomes = [outcome_of(client, r.json()["id"]) for r in responses]
    assert Counter(code_of(o) for o in outcomes) == {
        ("applied", None): 1,
        ("rejected", "hold_not_active"): 49,
    }
    (winner,) = [o for o in outcomes if o["status"] == "applied"]
    assert hold_state(client, held["id"])["captured_by"] == winner["id"]
    assert wallet(client, "alice") == (600, 0, 600)


def test_a_hundred_concurrent_holds_on_funds_for_forty_hold_exactly_forty(
    stack: Stack, tenant: TenantFixture, client: ApiClient
) -> None:
    topup(client, "alice", 40)
    calls = [("/transactions", hold_body("alice", 1)) for _ in range(100)]

    responses = submit_concurrently(stack.base_url, tenant.api_key, calls)

    assert [r.status_code for r in responses] == [202] * 100, {r.text for r in responses}
    outcomes = [outcome_of(client, r.json()["id"]) for r in responses]
    assert Counter(code_of(o) for o in outcomes) == {
        ("applied", None): 40,
        ("rejected", "insufficient_funds"): 60,
    }
    assert wallet(client, "alice") == (40, 40, 0)
    assert len(ids_of(listed_holds(client, "alice", status="held", limit=200))) == 40
    assert_rejected(spend(client, "alice", 1), "insufficient_funds")


# --- expiry ---------------------------------------------------------------------------------------


def test_the_sweeper_expires_due_holds_within_seconds(client: ApiClient, engine: Engine) -> None:
    topup(client, "alice", 1000)
    due = [applied(place_hold(client, "alice", amount, expires_in=1)) for amount in (10, 20)]
    at = datetime.now(UTC) + timedelta(seconds=2)
    due.append(applied(place_hold(client, "alice", 30, expires_at=at.isoformat())))
    assert datetime.fromisoformat(due[-1]["hold"]["expires_at"]) == at
    lasting = applied(place_hold(client, "alice", 5))

    wait_until(lambda: all_in(client, due, "expired"), SWEEP_DEADLINE, "the holds to expire")

    assert past_expiry(engine, due)
    assert wallet(client, "alice") == (1000, 5, 995)
    expired = listed_holds(client, "alice", status="expired")
    assert ids_of(expired) == [h["id"] for h in reversed(due)]
    assert all(item["hold"]["captured_amount"] is None for item in expired["items"])
    assert hold_state(client, lasting["id"])["status"] == "held"


def test_holds_falling_due_while_the_relay_is_dead_expire_once_it_is_back(
    stack: Stack, client: ApiClient, engine: Engine
) -> None:
    topup(client, "alice", 1000)
    holds = [applied(place_hold(client, "alice", 100, expires_in=SHORT_EXPIRY)) for _ in range(3)]
    (worker,) = stack.workers

    worker = stack.kill_relay(worker)  # SIGKILL, its whole process group
    try:
        assert all_in(client, holds, "held"), "a hold expired before the relay was killed"
        wait_until(lambda: past_expiry(engine, holds), timeout=15, what="the holds' expiry")
        # Due, and no relay: over several of its intervals (0.5 s) nothing releases them.
        stays(
            lambda: all_in(client, holds, "held") and wallet(client, "alice")[1] == 300,
            seconds=1.5,
            what="the overdue holds stay held while no relay runs",
        )
        # The rules judge by the clock, sweeper or not: an overdue hold cannot be captured.
        assert_rejected(capture(client, holds[0]["id"]), "hold_expired")
        assert wallet(client, "alice") == (1000, 300, 700)
    finally:
        worker = stack.start_relay(worker)

    wait_until(
        lambda: all_in(client, holds, "expired"), RESTART_DEADLINE, "the new relay to expire them"
    )
    assert wallet(client, "alice") == (1000, 0, 1000)


# --- webhooks -------------------------------------------------------------------------------------


def test_an_expired_hold_is_announced_by_a_signed_hold_expired_webhook(
    client: ApiClient, admin: ApiClient, receiver: WebhookReceiver
) -> None:
    endpoint = register(admin, receiver.url("expiry"), event_types=["hold.expired"])
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 70, expires_in=1))

    (request,) = receiver.wait_for_count("expiry", 1, timeout=30)

    # The package's own verifier, not the project's signer.
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "hold.expired"
    data = payload["data"]
    assert data["id"] == held["id"]
    assert data["hold"]["status"] == "expired"
    assert data["hold"]["amount"] == 70
    assert data == transaction(client, held["id"])
    assert wallet(client, "alice") == (1000, 0, 1000)
    # Subscribed to hold.expired only: the top-up and the hold sent nothing here.
    assert [r.payload["type"] for r in receiver.received("expiry")] == ["hold.expired"]


def test_a_capture_and_a_void_are_announced_by_signed_hold_webhooks(
    client: ApiClient, admin: ApiClient, receiver: WebhookReceiver
) -> None:
    endpoint = register(
        admin, receiver.url("settled"), event_types=["hold.captured", "hold.voided"]
    )
    topup(client, "alice", 1000)
    captured_hold = applied(place_hold(client, "alice", 100, to_user_id="shop"))
    captured = applied(capture(client, captured_hold["id"], amount=60))
    voided_hold = applied(place_hold(client, "alice", 10))
    voided = applied(void(client, voided_hold["id"]))

    received = receiver.wait_for_count("settled", 2, timeout=30)

    by_type = {}
    for request in received:
        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        by_type[payload["type"]] = payload["data"]
    assert set(by_type) == {"hold.captured", "hold.voided"}
    assert by_type["hold.captured"]["id"] == captured_hold["id"]
    assert by_type["hold.captured"]["hold"] == {
        **by_type["hold.captured"]["hold"],
        "status": "captured",
        "captured_amount": 60,
        "captured_by": captured["id"],
    }
    assert by_type["hold.captured"] == transaction(client, captured_hold["id"])
    assert by_type["hold.voided"]["id"] == voided_hold["id"]
    assert by_type["hold.voided"]["hold"]["voided_by"] == voided["id"]


# --- idempotency ----------------------------------------------------------------------------------


def test_replaying_a_hold_capture_or_void_answers_200_with_the_same_outcome(
    client: ApiClient,
) -> None:
    topup(client, "alice", 1000)
    first_hold = hold_body("alice", 300, expires_in=600)
    held = applied(settle(client, first_hold))
    assert_replayed(client.post("/transactions", first_hold), held)

    capture_body = action_body("capture", held["id"], amount=100)
    captured = applied(settle(client, capture_body))
    assert_replayed(client.post("/transactions", capture_body), captured)
    # The hold's replay shows the hold as it stands now.
    assert_replayed(client.post("/transactions", first_hold), transaction(client, held["id"]))

    second_hold = hold_body("alice", 50)
    void_body = action_body("void", applied(settle(client, second_hold))["id"])
    voided = applied(settle(client, void_body))
    assert_replayed(client.post("/transactions", void_body), voided)

    assert wallet(client, "alice") == (900, 0, 900)
    assert len(ids_of(listed_holds(client, "alice"))) == 2


def test_a_capture_replayed_after_its_hold_expired_returns_its_original_outcome(
    client: ApiClient, engine: Engine
) -> None:
    topup(client, "alice", 1000)
    held = applied(place_hold(client, "alice", 300, expires_in=SHORT_EXPIRY))
    capture_body = action_body("capture", held["id"])
    captured = applied(settle(client, capture_body))

    wait_until(lambda: past_expiry(engine, [held]), timeout=15, what="the hold's expiry")

    assert_replayed(client.post("/transactions", capture_body), captured)
    assert hold_state(client, held["id"])["status"] == "captured"
    assert wallet(client, "alice") == (700, 0, 700)


def test_a_used_reference_id_with_a_different_body_is_refused_409(client: ApiClient) -> None:
    topup(client, "alice", 1000)
    first_hold = hold_body("alice", 100)
    held = applied(settle(client, first_hold))
    capture_body = action_body("capture", held["id"], amount=10)
    applied(settle(client, capture_body))
    void_body = action_body("void", applied(place_hold(client, "alice", 20))["id"])
    applied(settle(client, void_body))

    for changed in (
        {**first_hold, "amount": 101},
        {**first_hold, "expires_in": 60},
        {**capture_body, "amount": 11},
        {**void_body, "original_transaction_id": held["id"]},
        {**void_body, "type": "capture"},
    ):
        response = client.post("/transactions", changed)
        assert response.status_code == 409, (changed, response.text)
        assert response.json()["code"] == "idempotency_key_reused"

    assert wallet(client, "alice") == (990, 0, 990)
