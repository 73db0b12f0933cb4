"""Real threads against real PostgreSQL: refunds of one split spend race each other, and
splits race a freeze of one of their legs. Each race ends in a state some serial order of
the same operations would have left: no leg gives back more than it received, and a refund
is applied whole or not at all."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from ledger import posting
from ledger.audit import OPERATOR
from ledger.db import unit_of_work
from ledger.posting import BatchResult, post_transactions
from ledger.posting_book import open_book as real_open_book
from ledger.queries import get_balance
from ledger.system_accounts import define_system_account, list_system_accounts
from ledger.verify import verify_ledger
from ledger.wallets import freeze_wallet, unfreeze_wallet
from tests.conftest import TenantFixture
from tests.integration.ledger.helpers import balance, run, someone_waits_for, status, submit
from tests.integration.ledger.test_batches import drain
from tests.integration.ledger.test_concurrency import all_at_once, statuses
from tests.support.stack import eventually

SPEND = 10_000
# The order's legs, in the order the spend names them: refunds share by this order.
LEGS = {"seller": 9_000, "@fees": 800, "@tax": 200}


def split_legs() -> list[dict[str, Any]]:
    return [
        {"to_account" if owner.startswith("@") else "to_user_id": owner, "amount": amount}
        for owner, amount in LEGS.items()
    ]


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """The documented rule, restated with exact fractions: shares rounded down, the units
    left one each to the largest fractional parts, ties to the earlier leg."""
    whole = sum(weights)
    exact = [Fraction(total * weight, whole) for weight in weights]
    shares = [int(share) for share in exact]
    by_dropped = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for index in by_dropped[: total - sum(shares)]:
        shares[index] += 1
    return shares


def owner_of(leg: dict[str, Any]) -> str:
    return str(leg.get("to_user_id") or leg["to_account"])


def system_balances(engine: Engine, tenant_id: uuid.UUID) -> dict[str, int]:
    with engine.connect() as conn:
        listed = list_system_accounts(conn, tenant_id, "EUR")
    return {row["name"]: row["balance"] for row in listed}


def wallet_state(engine: Engine, tenant_id: uuid.UUID, user_id: str) -> tuple[int, str, int]:
    """(balance, status, version) of a EUR wallet."""
    with unit_of_work(engine) as work:
        found = get_balance(work.connection, tenant_id, user_id, "EUR")
    return found["balance"], found["status"], found["version"]


def entries_of(engine: Engine, transaction_id: uuid.UUID) -> dict[str, tuple[int, int]]:
    """owner -> (amount, account version) of each entry a transaction wrote."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.owner, e.amount, e.account_version FROM entries e"
                " JOIN accounts a ON a.id = e.account_id WHERE e.transaction_id = :id"
            ),
            {"id": transaction_id},
        ).all()
    return {owner: (amount, version) for owner, amount, version in rows}


def refunds_in_applied_order(engine: Engine, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    """The applied refunds in the order they credited the buyer (one serial history)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT t.id FROM entries e JOIN accounts a ON a.id = e.account_id"
                    " JOIN transactions t ON t.id = e.transaction_id"
                    " WHERE a.tenant_id = :t AND a.owner = 'buyer' AND t.type = 'refund'"
                    " ORDER BY e.account_version"
                ),
                {"t": tenant_id},
            ).scalars()
        )


@pytest.fixture
def order_paid(engine: Engine, tenant: TenantFixture) -> dict[str, Any]:
    """@fees and @tax defined; a buyer paid 100.00 in three legs: the seller 90.00, @fees
    8.00, @tax 2.00."""
    for name in ("@fees", "@tax"):
        with unit_of_work(engine) as work:
            define_system_account(work, tenant.id, name, actor=OPERATOR)
    run(engine, tenant.id, "topup", user_id="buyer", amount=50_000)
    spend = run(engine, tenant.id, "spend", user_id="buyer", amount=SPEND, splits=split_legs())
    assert spend["status"] == "applied", spend
    assert [(owner_of(leg), leg["amount"]) for leg in spend["splits"]] == list(LEGS.items())
    return spend


def test_fifty_concurrent_refunds_of_a_split_spend_never_over_refund_a_leg(
    engine: Engine, tenant: TenantFixture, order_paid: dict[str, Any]
) -> None:
    rng = random.Random(20261208)
    spend_id = uuid.UUID(order_paid["id"])
    # Pro-rata refunds, and every fifth one asking @tax alone for 30: @tax (2.00) runs dry
    # early, so the pro-rata ones must stop taking from it while the others race them.
    asked: list[dict[str, int] | None] = [{"@tax": 30} if n % 5 == 4 else None for n in range(50)]
    amounts = [30 if legs else rng.randint(1, 500) for legs in asked]
    assert sum(amounts) > SPEND  # more is asked than was spent: some must be refused
    refunds = []
    for amount, legs in zip(amounts, asked, strict=True):
        fields: dict[str, Any] = {"original_transaction_id": spend_id}
        if legs:
            fields["splits"] = [{"to_account": o, "amount": a} for o, a in legs.items()]
        refunds.append(
            submit(engine, tenant.id, "refund", user_id="buyer", amount=amount, **fields).id
        )
    # Ten appliers, released together: half apply their five as one batch, half one by one.
    chunks = [refunds[k::10] for k in range(10)]

    def apply_chunk(index_and_chunk: tuple[int, list[uuid.UUID]]) -> list[BatchResult]:
        index, chunk = index_and_chunk
        if index % 2:
            return [post_transactions(engine, chunk)]
        return [post_transactions(engine, [one]) for one in chunk]

    results = all_at_once(apply_chunk, list(enumerate(chunks)))

    outcomes = statuses(engine, refunds)
    assert set(outcomes) <= {("applied", None), ("rejected", "refund_exceeds_original")}
    reported = {
        o.transaction_id: (o.status, o.code) for rs in results for r in rs for o in r.outcomes
    }
    assert reported == dict(zip(refunds, outcomes, strict=True))

    # Replay the applied refunds in the order they reached the buyer, by the documented
    # rule: each took exactly what the rule gives at its turn, and recorded it in `splits`.
    left = dict(LEGS)
    order_applied = refunds_in_applied_order(engine, tenant.id)
    applied = {i for i, (state, _) in zip(refunds, outcomes, strict=True) if state == "applied"}
    assert set(order_applied) == applied and len(order_applied) == len(applied)
    for refund_id in order_applied:
        index = refunds.index(refund_id)
        wanted = asked[index] or dict(
            zip(left, largest_remainder(amounts[index], list(left.values())), strict=True)
        )
        expected = [(owner, wanted[owner]) for owner in LEGS if wanted.get(owner)]
        view = status(engine, tenant.id, refund_id)
        assert [(owner_of(leg), leg["amount"]) for leg in view["splits"]] == expected, view
        assert sum(leg["amount"] for leg in view["splits"]) == amounts[index]
        for owner, part in expected:
            left[owner] -= part
            assert left[owner] >= 0, f"leg {owner} gave back more than it received"
    # A refused refund asked, when it was judged, for more than was left; what is left now
    # is no more than then.
    for refund_id, (state, _) in zip(refunds, outcomes, strict=True):
        if state == "rejected":
            index = refunds.index(refund_id)
            too_much = amounts[index] > sum(left.values()) or any(
                part > left[owner] for owner, part in (asked[index] or {}).items()
            )
            assert too_much, (amounts[index], asked[index], left)
            assert entries_of(engine, refund_id) == {}

    # Per leg, the refunds' own `splits` stay within what the leg received.
    given_back: Counter[str] = Counter()
    for refund_id in applied:
        for leg in status(engine, tenant.id, refund_id)["splits"]:
            given_back[owner_of(leg)] += leg["amount"]
    assert all(given_back[owner] <= LEGS[owner] for owner in LEGS), given_back
    refunded = sum(amounts[refunds.index(i)] for i in applied)
    assert refunded == sum(given_back.values()) <= SPEND
    assert left == {owner: LEGS[owner] - given_back[owner] for owner in LEGS}

    # Balances: every cent a leg gave back is in the buyer's wallet.
    assert balance(engine, tenant.id, "buyer") == 50_000 - SPEND + refunded
    assert balance(engine, tenant.id, "seller") == LEGS["seller"] - given_back["seller"]
    accounts = system_balances(engine, tenant.id)
    assert (accounts["@fees"], accounts["@tax"]) == (left["@fees"], left["@tax"])
    assert accounts["@revenue"] == 0
    with engine.connect() as conn:
        report = verify_ledger(conn, tenant.id)
    assert report.ok, "\n".join(report.lines())


def _freeze(engine: Engine, tenant_id: uuid.UUID, user_id: str) -> None:
    with unit_of_work(engine) as work:
        freeze_wallet(work, tenant_id, user_id, "EUR", actor=OPERATOR, reason="race")


def _unfreeze(engine: Engine, tenant_id: uuid.UUID, user_id: str) -> None:
    with unit_of_work(engine) as work:
        unfreeze_wallet(work, tenant_id, user_id, "EUR", actor=OPERATOR)


def race_freeze(
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    order: str,
    tenant_id: uuid.UUID,
    transaction_id: uuid.UUID,
) -> None:
    """Apply `transaction_id` and freeze the seller at once. `together`: released by one
    barrier, either may win. `posting first`: the freeze starts once the batch holds its
    account locks, and the batch commits only once the freeze waits on them. `freeze first`:
    the freeze, uncommitted, holds the seller's row until the batch waits on it."""
    apply = partial(post_transactions, engine, [transaction_id])
    if order == "together":
        all_at_once(lambda action: action(), [apply, partial(_freeze, engine, tenant_id, "seller")])
        return
    if order == "posting first":
        locked = threading.Event()

        def open_book_then_wait(conn: Connection, *args: Any) -> Any:
            book = real_open_book(conn, *args)
            locked.set()
            eventually(lambda: someone_waits_for(engine, conn), 30, "the freeze to wait")
            return book

        def freeze_once_locked() -> None:
            assert locked.wait(30), "the batch never locked its accounts"
            _freeze(engine, tenant_id, "seller")

        with monkeypatch.context() as patch:
            patch.setattr(posting, "open_book", open_book_then_wait)
            all_at_once(lambda action: action(), [apply, freeze_once_locked])
        return
    assert order == "freeze first"
    with ThreadPoolExecutor(1) as pool:
        with unit_of_work(engine) as work:
            freeze_wallet(work, tenant_id, "seller", "EUR", actor=OPERATOR, reason="race")
            applying = pool.submit(apply)
            eventually(lambda: someone_waits_for(engine, work.connection), 30, "the batch")
        applying.result()


ORDERS = ["together", "posting first", "freeze first"]
# The free race is run more often: which side wins it varies with the machine's load.
ROUNDS = {"together": 10, "posting first": 2, "freeze first": 2}


@pytest.mark.parametrize("order", ORDERS)
def test_a_split_spend_racing_a_freeze_of_its_seller_is_applied_either_way(
    engine: Engine,
    tenant: TenantFixture,
    order_paid: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    order: str,
) -> None:
    """A frozen wallet still receives: whichever comes first, the spend pays every leg and
    the seller ends frozen. The seller's version says which came first."""
    rounds = ROUNDS[order]
    run(engine, tenant.id, "topup", user_id="buyer", amount=SPEND * rounds)
    for round_number in range(rounds):
        spend = submit(
            engine, tenant.id, "spend", user_id="buyer", amount=SPEND, splits=split_legs()
        ).id
        seller_before, _, version_before = wallet_state(engine, tenant.id, "seller")
        fees_before = system_balances(engine, tenant.id)["@fees"]

        race_freeze(engine, monkeypatch, order, tenant.id, spend)

        assert statuses(engine, [spend]) == [("applied", None)], round_number
        assert wallet_state(engine, tenant.id, "seller") == (
            seller_before + LEGS["seller"],
            "frozen",
            version_before + 2,
        )
        written = entries_of(engine, spend)
        assert {owner: amount for owner, (amount, _) in written.items()} == {
            "buyer": -SPEND,
            **LEGS,
        }
        # The spend's credit is the seller's version +1 (before the freeze) or +2 (after).
        allowed = {
            "together": {version_before + 1, version_before + 2},
            "posting first": {version_before + 1},
            "freeze first": {version_before + 2},
        }[order]
        assert written["seller"][1] in allowed, (order, written, version_before)
        assert system_balances(engine, tenant.id)["@fees"] == fees_before + LEGS["@fees"]
        _unfreeze(engine, tenant.id, "seller")
    assert balance(engine, tenant.id, "buyer") == 50_000 - SPEND


@pytest.mark.parametrize("order", ORDERS)
def test_a_refund_of_a_split_spend_racing_a_freeze_of_a_leg_is_applied_whole_or_refused(
    engine: Engine,
    tenant: TenantFixture,
    order_paid: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    order: str,
) -> None:
    """Either the refund came first and every leg gave its share, then the seller froze; or
    the freeze came first and the refund was refused `wallet_frozen` naming the seller's leg,
    having moved nothing."""
    rounds = ROUNDS[order]
    run(engine, tenant.id, "topup", user_id="buyer", amount=SPEND * rounds)
    seen: Counter[str] = Counter()
    for _ in range(rounds):
        spend = run(engine, tenant.id, "spend", user_id="buyer", amount=SPEND, splits=split_legs())
        refund = submit(
            engine,
            tenant.id,
            "refund",
            user_id="buyer",
            amount=5_000,
            original_transaction_id=uuid.UUID(spend["id"]),
        ).id
        buyer_before = balance(engine, tenant.id, "buyer")
        seller_before, _, version_before = wallet_state(engine, tenant.id, "seller")
        accounts_before = system_balances(engine, tenant.id)

        race_freeze(engine, monkeypatch, order, tenant.id, refund)

        view = status(engine, tenant.id, refund)
        seller_after, seller_status, version_after = wallet_state(engine, tenant.id, "seller")
        accounts_after = system_balances(engine, tenant.id)
        written = entries_of(engine, refund)
        assert seller_status == "frozen"
        if view["status"] == "applied":
            seen["refund first"] += 1
            # Pro rata: 45.00 / 4.00 / 1.00, the seller's part taken before the freeze.
            assert [(owner_of(leg), leg["amount"]) for leg in view["splits"]] == [
                ("seller", 4_500),
                ("@fees", 400),
                ("@tax", 100),
            ]
            assert view["splits"][0]["balance_after"] == seller_before - 4_500
            assert {owner: amount for owner, (amount, _) in written.items()} == {
                "buyer": 5_000,
                "seller": -4_500,
                "@fees": -400,
                "@tax": -100,
            }
            # The refund debited the seller first; the freeze bumped its version after.
            assert (written["seller"][1], version_after) == (version_before + 1, version_before + 2)
            assert balance(engine, tenant.id, "buyer") == buyer_before + 5_000
            assert seller_after == seller_before - 4_500
            assert accounts_after["@fees"] == accounts_before["@fees"] - 400
            assert accounts_after["@tax"] == accounts_before["@tax"] - 100
        else:
            seen["freeze first"] += 1
            assert view["status"] == "rejected", view
            assert view["result"]["code"] == "wallet_frozen", view
            assert view["result"]["message"].endswith("(leg seller)"), view
            assert view.get("splits") is None, view
            assert written == {}
            assert balance(engine, tenant.id, "buyer") == buyer_before
            assert (seller_after, version_after) == (seller_before, version_before + 1)
            assert accounts_after == accounts_before
        _unfreeze(engine, tenant.id, "seller")
    expected = {"posting first": {"refund first"}, "freeze first": {"freeze first"}}
    assert set(seen) <= expected.get(order, {"refund first", "freeze first"}), seen
    assert sum(seen.values()) == rounds


def test_a_refund_of_a_split_spend_waits_for_an_earlier_payout_of_its_seller_held_elsewhere(
    engine: Engine, tenant: TenantFixture, order_paid: dict[str, Any]
) -> None:
    """Per wallet, acceptance order holds for the legs a refund takes back from too: the
    seller's payout, accepted first, is applied first, even while another worker holds it."""
    drain(engine)
    payout = submit(engine, tenant.id, "payout", user_id="seller", amount=LEGS["seller"]).id
    refund = submit(
        engine,
        tenant.id,
        "refund",
        user_id="buyer",
        amount=SPEND,
        original_transaction_id=uuid.UUID(order_paid["id"]),
    ).id

    # Another session holds the payout's row, as a worker applying it does.
    with engine.connect() as other:
        other.execute(text("SELECT 1 FROM transactions WHERE id = :id FOR UPDATE"), {"id": payout})
        held = post_transactions(engine, [refund], fill_to=50, in_order=True)
        other.rollback()

    assert (held.outcomes, held.deferred) == ([], [refund])
    released = post_transactions(engine, [refund], fill_to=50, in_order=True)
    assert [(o.transaction_id, o.status, o.code) for o in released.outcomes] == [
        (payout, "applied", None),
        (refund, "rejected", "insufficient_funds"),
    ]
    assert status(engine, tenant.id, refund)["result"]["message"].endswith("(leg seller)")
    assert balance(engine, tenant.id, "seller") == 0
    assert system_balances(engine, tenant.id)["@payouts"] == LEGS["seller"]
