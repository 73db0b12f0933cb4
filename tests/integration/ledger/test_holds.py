"""Two-phase holds: a hold reserves funds, a capture takes all or part, a void or expiry
releases them; each only once, and the wallet's pending always matches its held holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.holds import expire_due_holds, list_holds
from ledger.posting import post_transactions
from ledger.queries import get_balance
from ledger.tenants import create_tenant
from ledger.verify import verify_ledger
from ledger.wallets import update_wallet
from tests.integration.ledger.helpers import run, status, submit


def wallet(engine: Engine, tenant_id: uuid.UUID, user_id: str) -> dict[str, Any]:
    with unit_of_work(engine) as work:
        return get_balance(work.connection, tenant_id, user_id, "EUR")


def funded(engine: Engine, tenant_id: uuid.UUID, user_id: str = "alice", amount: int = 1000):
    run(engine, tenant_id, "topup", user_id=user_id, amount=amount)


def hold(engine: Engine, tenant_id: uuid.UUID, amount: int, **fields: Any) -> dict[str, Any]:
    fields.setdefault("user_id", "alice")
    return run(engine, tenant_id, "hold", amount=amount, **fields)


def settle(engine: Engine, tenant_id: uuid.UUID, kind: str, of: dict[str, Any], **fields: Any):
    return run(engine, tenant_id, kind, original_transaction_id=uuid.UUID(of["id"]), **fields)


def expire_now(engine: Engine, hold_id: str) -> None:
    """Move a hold's expiry into the past, as time passing would (no sleeping in tests)."""
    with unit_of_work(engine) as work:
        work.connection.execute(
            text(
                "UPDATE holds SET expires_at = now() - interval '1 second'"
                " WHERE transaction_id = :id"
            ),
            {"id": hold_id},
        )


def events_of(engine: Engine, transaction_id: str) -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT type, payload FROM events WHERE transaction_id = :id ORDER BY created_at"),
            {"id": transaction_id},
        ).all()
    return [(kind, payload) for kind, payload in rows]


def test_a_hold_reserves_funds_without_moving_money(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 300)

    assert held["status"] == "applied"
    assert held["hold"]["status"] == "held"
    assert held["hold"]["amount"] == 300
    expires = datetime.fromisoformat(held["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    alice = wallet(engine, tenant.id, "alice")
    assert (alice["balance"], alice["pending"], alice["available"]) == (1000, 300, 700)
    spent_too_much = run(engine, tenant.id, "spend", user_id="alice", amount=701)
    assert spent_too_much["result"]["code"] == "insufficient_funds"


@pytest.mark.parametrize(
    ("prepare", "code"),
    [
        ("nothing", "insufficient_funds"),
        ("freeze", "wallet_frozen"),
        ("close", "wallet_closed"),
    ],
)
def test_a_hold_follows_the_rules_of_a_spend(engine, tenant, prepare, code):
    funded(engine, tenant.id, amount=100)
    if prepare != "nothing":
        with unit_of_work(engine) as work:
            status_of = {"freeze": "frozen", "close": "closed"}[prepare]
            update_wallet(work, tenant.id, "alice", "EUR", status=status_of)
    rejected = hold(engine, tenant.id, 50 if prepare != "nothing" else 101)
    assert rejected["status"] == "rejected"
    assert rejected["result"]["code"] == code
    assert rejected["hold"] is None
    assert wallet(engine, tenant.id, "alice")["pending"] == 0


def test_a_hold_on_an_unknown_wallet_is_rejected(engine, tenant):
    assert hold(engine, tenant.id, 5, user_id="nobody")["result"]["code"] == "wallet_not_found"


def test_a_full_capture_moves_the_hold_to_revenue(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 400)
    captured = settle(engine, tenant.id, "capture", held)

    assert captured["status"] == "applied"
    assert captured["amount"] == 400
    assert captured["user_id"] == "alice"
    assert captured["balance_after"] == 600
    alice = wallet(engine, tenant.id, "alice")
    assert (alice["balance"], alice["pending"], alice["available"]) == (600, 0, 600)
    after = status(engine, tenant.id, uuid.UUID(held["id"]))["hold"]
    assert after["status"] == "captured"
    assert after["captured_amount"] == 400
    assert after["captured_by"] == captured["id"]


def test_a_partial_capture_releases_the_rest_and_pays_the_destination(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 500, to_user_id="shop")
    captured = settle(engine, tenant.id, "capture", held, amount=120)

    assert captured["to_user_id"] == "shop"
    assert captured["to_balance_after"] == 120
    alice = wallet(engine, tenant.id, "alice")
    assert (alice["balance"], alice["pending"], alice["available"]) == (880, 0, 880)
    assert wallet(engine, tenant.id, "shop")["balance"] == 120


def test_a_capture_above_the_hold_changes_nothing(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 100)
    too_much = settle(engine, tenant.id, "capture", held, amount=101)

    assert too_much["result"]["code"] == "capture_exceeds_hold"
    assert wallet(engine, tenant.id, "alice")["pending"] == 100
    assert status(engine, tenant.id, uuid.UUID(held["id"]))["hold"]["status"] == "held"


def test_a_hold_is_captured_or_voided_once(engine, tenant):
    funded(engine, tenant.id)
    captured_hold = hold(engine, tenant.id, 100)
    assert settle(engine, tenant.id, "capture", captured_hold)["status"] == "applied"
    for kind in ("capture", "void"):
        again = settle(engine, tenant.id, kind, captured_hold)
        assert again["result"]["code"] == "hold_not_active"

    voided_hold = hold(engine, tenant.id, 50)
    voided = settle(engine, tenant.id, "void", voided_hold)
    assert voided["status"] == "applied"
    assert voided["amount"] == 50
    for kind in ("capture", "void"):
        assert settle(engine, tenant.id, kind, voided_hold)["result"]["code"] == "hold_not_active"
    alice = wallet(engine, tenant.id, "alice")
    assert (alice["balance"], alice["pending"]) == (900, 0)


def test_naming_no_hold_of_this_tenant_is_hold_not_found(engine, tenant):
    funded(engine, tenant.id)
    spend = run(engine, tenant.id, "spend", user_id="alice", amount=5)
    with unit_of_work(engine) as work:
        stranger = create_tenant(work, "stranger")
        create_asset(work, stranger, "EUR", "Euro", 2)
    run(engine, stranger, "topup", user_id="alice", amount=100)
    foreign = hold(engine, stranger, 10)

    for original in (str(uuid.uuid4()), spend["id"], foreign["id"]):
        for kind in ("capture", "void"):
            rejected = run(engine, tenant.id, kind, original_transaction_id=uuid.UUID(original))
            assert rejected["result"]["code"] == "hold_not_found", (kind, original)
            if original != spend["id"]:
                assert rejected["user_id"] is None
    assert wallet(engine, stranger, "alice")["pending"] == 10
    with engine.connect() as conn:
        assert verify_ledger(conn, stranger).ok


def test_an_expired_hold_cannot_be_captured_and_the_sweeper_releases_it(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 200)
    expire_now(engine, held["id"])

    late = settle(engine, tenant.id, "capture", held)
    assert late["result"]["code"] == "hold_expired"
    assert wallet(engine, tenant.id, "alice")["pending"] == 200

    with unit_of_work(engine) as work:
        assert expire_due_holds(work) >= 1
    assert wallet(engine, tenant.id, "alice")["pending"] == 0
    assert status(engine, tenant.id, uuid.UUID(held["id"]))["hold"]["status"] == "expired"
    assert settle(engine, tenant.id, "void", held)["result"]["code"] == "hold_expired"
    ((kind, payload),) = [e for e in events_of(engine, held["id"]) if e[0].startswith("hold.")]
    assert kind == "hold.expired"
    assert payload["hold"]["status"] == "expired"


def test_within_one_batch_the_earlier_of_a_capture_and_a_void_wins(engine, tenant):
    funded(engine, tenant.id)
    held = submit(engine, tenant.id, "hold", user_id="alice", amount=300)
    capture = submit(engine, tenant.id, "capture", original_transaction_id=held.id, amount=100)
    void = submit(engine, tenant.id, "void", original_transaction_id=held.id)

    result = post_transactions(engine, [held.id, capture.id, void.id])

    assert [o.status for o in result.outcomes] == ["applied", "applied", "rejected"]
    assert result.outcomes[2].code == "hold_not_active"
    alice = wallet(engine, tenant.id, "alice")
    assert (alice["balance"], alice["pending"]) == (900, 0)
    assert status(engine, tenant.id, held.id)["hold"]["captured_amount"] == 100


def test_a_capture_before_its_hold_is_applied_is_not_active(engine, tenant):
    funded(engine, tenant.id)
    held = submit(engine, tenant.id, "hold", user_id="alice", amount=30)
    capture = submit(engine, tenant.id, "capture", original_transaction_id=held.id)

    early = post_transactions(engine, [capture.id])

    assert early.outcomes[0].code == "hold_not_active"
    post_transactions(engine, [held.id])
    assert wallet(engine, tenant.id, "alice")["pending"] == 30


def test_a_capture_can_be_refunded_up_to_what_it_took(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 500)
    captured = settle(engine, tenant.id, "capture", held, amount=200)

    def refund(amount: int) -> dict[str, Any]:
        return run(
            engine,
            tenant.id,
            "refund",
            user_id="alice",
            amount=amount,
            original_transaction_id=uuid.UUID(captured["id"]),
        )

    assert refund(150)["status"] == "applied"
    assert refund(51)["result"]["code"] == "refund_exceeds_original"
    assert refund(50)["status"] == "applied"
    assert wallet(engine, tenant.id, "alice")["balance"] == 1000


def test_a_frozen_wallet_keeps_its_hold_until_voided(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 100)
    with unit_of_work(engine) as work:
        update_wallet(work, tenant.id, "alice", "EUR", status="frozen")

    assert settle(engine, tenant.id, "capture", held)["result"]["code"] == "wallet_frozen"
    assert settle(engine, tenant.id, "void", held)["status"] == "applied"
    alice = wallet(engine, tenant.id, "alice")
    assert (alice["balance"], alice["pending"]) == (1000, 0)


def test_captures_and_voids_announce_the_hold_in_the_same_commit(engine, tenant):
    funded(engine, tenant.id)
    captured_hold = hold(engine, tenant.id, 100)
    capture = settle(engine, tenant.id, "capture", captured_hold, amount=60)
    voided_hold = hold(engine, tenant.id, 10)
    settle(engine, tenant.id, "void", voided_hold)

    captured_events = events_of(engine, captured_hold["id"])
    assert [kind for kind, _ in captured_events] == ["transaction.applied", "hold.captured"]
    payload = captured_events[1][1]
    assert payload["id"] == captured_hold["id"]
    assert payload["hold"] == {
        **payload["hold"],
        "status": "captured",
        "captured_amount": 60,
        "captured_by": capture["id"],
    }
    assert [kind for kind, _ in events_of(engine, voided_hold["id"])] == [
        "transaction.applied",
        "hold.voided",
    ]


def test_replays_return_the_first_outcome_even_after_expiry(engine, tenant):
    funded(engine, tenant.id)
    held = submit(engine, tenant.id, "hold", user_id="alice", amount=70, reference_id="h-1")
    post_transactions(engine, [held.id])
    capture = submit(
        engine, tenant.id, "capture", original_transaction_id=held.id, reference_id="c-1"
    )
    post_transactions(engine, [capture.id])
    expire_now(engine, str(held.id))

    again = submit(
        engine, tenant.id, "capture", original_transaction_id=held.id, reference_id="c-1"
    )
    assert again.replayed
    assert again.transaction["status"] == "applied"
    assert again.transaction["amount"] == 70
    replayed_hold = submit(
        engine, tenant.id, "hold", user_id="alice", amount=70, reference_id="h-1"
    )
    assert replayed_hold.transaction["hold"]["status"] == "captured"


def test_a_wallet_lists_its_holds_newest_first_by_status(engine, tenant):
    funded(engine, tenant.id)
    first, second, third = (hold(engine, tenant.id, amount) for amount in (1, 2, 3))
    settle(engine, tenant.id, "void", second)

    with unit_of_work(engine) as work:
        everything = list_holds(work.connection, tenant.id, "alice", "EUR", limit=2)
        rest = list_holds(
            work.connection, tenant.id, "alice", "EUR", cursor=everything["next_cursor"]
        )
        held = list_holds(work.connection, tenant.id, "alice", "EUR", status="held")

    assert [h["id"] for h in everything["items"]] == [third["id"], second["id"]]
    assert [h["id"] for h in rest["items"]] == [first["id"]]
    assert rest["next_cursor"] is None
    assert [h["id"] for h in held["items"]] == [third["id"], first["id"]]
    assert everything["items"][1]["hold"]["status"] == "voided"


def test_verify_catches_pending_that_no_hold_explains(engine, tenant):
    funded(engine, tenant.id)
    hold(engine, tenant.id, 10)
    with engine.connect() as conn:
        conn.execute(
            text(
                "UPDATE accounts SET pending = pending + 1 WHERE tenant_id = :t AND owner = 'alice'"
            ),
            {"t": tenant.id},
        )
        report = verify_ledger(conn, tenant.id)
        conn.rollback()
    failing = [check.name for check in report.checks if not check.ok]
    assert failing == ["every wallet's pending equals the sum of its held holds"]


def test_verify_warns_about_an_overdue_hold_without_failing(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 10)
    with engine.connect() as conn:
        conn.execute(
            text(
                "UPDATE holds SET expires_at = now() - interval '1 hour' WHERE transaction_id = :id"
            ),
            {"id": held["id"]},
        )
        report = verify_ledger(conn, tenant.id)
        conn.rollback()
    assert report.ok
    assert any(line.startswith("WARN") and "expiry" in line for line in report.lines())


def test_a_refund_of_a_capture_that_paid_a_wallet_comes_back_from_that_wallet(engine, tenant):
    funded(engine, tenant.id)
    held = hold(engine, tenant.id, 300, to_user_id="shop")
    captured = settle(engine, tenant.id, "capture", held)

    def refund(amount: int) -> dict[str, Any]:
        return run(
            engine,
            tenant.id,
            "refund",
            user_id="alice",
            amount=amount,
            original_transaction_id=uuid.UUID(captured["id"]),
        )

    first = refund(100)
    assert first["status"] == "applied"
    assert (first["to_user_id"], first["to_balance_after"]) == ("shop", 200)
    run(engine, tenant.id, "spend", user_id="shop", amount=150)
    # The shop spent what it was paid: it cannot give back more than it has.
    assert refund(100)["result"]["code"] == "insufficient_funds"
    assert refund(50)["status"] == "applied"
    assert wallet(engine, tenant.id, "alice")["balance"] == 850
    assert wallet(engine, tenant.id, "shop")["balance"] == 0
