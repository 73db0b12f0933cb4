"""Batched application decides every transaction exactly as one-at-a-time application does.

A seeded random sequence of a few thousand transactions (holds, captures and voids among
them), with many rejections of every kind mixed in, is recorded identically in two
tenants. One tenant's transactions are applied one per commit, the other's in large
batches through the workers' engine; statuses, result codes, balances, holds and every
account's journal must come out the same.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import Engine, text

from ledger.assets import create_asset
from ledger.db import unit_of_work
from ledger.errors import LedgerError
from ledger.intake import accept_transactions
from ledger.posting import post_transactions
from ledger.tenants import create_tenant
from ledger.transaction_request import TransactionRequest
from ledger.wallets import update_wallet
from tests.conftest import assert_invariants
from worker.tasks import make_worker_engine

SEED = 1234
COUNT = 2500
USERS = [f"u{n}" for n in range(25)]
CHUNK = 100  # intake chunk; a refund only names a spend recorded in an earlier chunk
FROZEN, LIMITED, CLOSED = "u3", "u5", "u11"


def random_sequence(rng: random.Random) -> list[dict[str, Any]]:
    """Abstract operations: refunds, captures and voids name their original by position."""
    ops: list[dict[str, Any]] = [
        {"type": "topup", "user_id": user, "amount": rng.randint(50, 300)} for user in USERS
    ]
    spends: list[int] = []  # and captures: what a refund may name
    holds: list[int] = []

    def recorded_before(positions: list[int]) -> list[int]:
        return [n for n in positions if n < len(ops) - len(ops) % CHUNK]

    def owner(position: int) -> str | None:
        """The wallet a spend or capture (through its hold) debits."""
        op = ops[position]
        if op["type"] == "capture":
            return None if op["original"] is None else owner(op["original"])
        return str(op["user_id"])

    while len(ops) < COUNT:
        roll = rng.random()
        user = rng.choice(USERS)
        if roll < 0.18:
            op = {"type": "topup", "user_id": user, "amount": rng.randint(1, 300)}
        elif roll < 0.25:
            op = {"type": "bonus", "user_id": user, "amount": rng.randint(1, 100)}
        elif roll < 0.52:
            op = {"type": "spend", "user_id": user, "amount": rng.randint(1, 400)}
        elif roll < 0.56:
            op = {"type": "spend", "user_id": f"ghost{rng.randint(0, 9)}", "amount": 5}
        elif roll < 0.74:
            target = rng.choice([*USERS, f"new{rng.randint(0, 30)}"])
            if target == user:
                continue
            op = {"type": "transfer", "user_id": user, "to_user_id": target}
            op["amount"] = rng.randint(1, 300)
        elif roll < 0.86:
            earlier = recorded_before(spends)
            if not earlier or rng.random() < 0.1:
                op = {"type": "refund", "user_id": user, "original": None}
            else:
                original = rng.choice(earlier)
                debited = owner(original) if rng.random() < 0.9 else user
                op = {"type": "refund", "user_id": debited or user, "original": original}
            op["amount"] = rng.randint(1, 200)
        elif roll < 0.90:
            op = {"type": "hold", "user_id": user, "amount": rng.randint(1, 250)}
            if rng.random() < 0.3:
                op["to_user_id"] = rng.choice([u for u in USERS if u != user])
            holds.append(len(ops))
        elif roll < 0.97:
            kind = "capture" if rng.random() < 0.6 else "void"
            earlier = recorded_before(holds)
            original = rng.choice(earlier) if earlier and rng.random() > 0.1 else None
            op = {"type": kind, "original": original}
            if kind == "capture" and rng.random() < 0.5:
                op["amount"] = rng.randint(1, 250)
        else:
            amount = rng.choice([-1, 1]) * rng.randint(1, 200)
            op = {"type": "adjustment", "user_id": user, "amount": amount, "reason": "fix"}
        if op["type"] in ("spend", "capture"):
            spends.append(len(ops))
        ops.append(op)
    return ops


def record(engine: Engine, ops: list[dict[str, Any]], name: str) -> tuple[uuid.UUID, list]:
    """A tenant holding `ops` as queued transactions; their ids, in order."""
    with unit_of_work(engine) as work:
        tenant_id = create_tenant(work, name)
        create_asset(work, tenant_id, "EUR", "Euro", 2)
    ids: list[uuid.UUID] = []
    for start in range(0, len(ops), CHUNK):
        requests = []
        for index, op in enumerate(ops[start : start + CHUNK], start):
            fields = {k: v for k, v in op.items() if k != "original"}
            if "original" in op:
                original = op["original"]
                fields["original_transaction_id"] = (
                    uuid.UUID(int=index) if original is None else ids[original]
                )
            if op["type"] not in ("capture", "void"):  # these take their hold's wallet
                fields["asset_code"] = "EUR"
            requests.append(TransactionRequest(reference_id=f"op-{index}", **fields))
        with unit_of_work(engine) as work:
            results = accept_transactions(
                work, tenant_id, [r.validated() for r in requests], admin=True
            )
        for result in results:
            assert not isinstance(result, LedgerError), result
            ids.append(result.id)
    # Wallet rules the sequence runs into: a frozen, a credit-limited and a closed wallet.
    with unit_of_work(engine) as work:
        update_wallet(work, tenant_id, FROZEN, "EUR", status="frozen")
        update_wallet(work, tenant_id, LIMITED, "EUR", credit_limit=150)
        update_wallet(work, tenant_id, CLOSED, "EUR", status="closed")
    return tenant_id, ids


def outcomes(engine: Engine, tenant_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT reference_id, status, result_code FROM transactions"
                " WHERE tenant_id = :t ORDER BY seq"
            ),
            {"t": tenant_id},
        )
        return [(reference, status, code) for reference, status, code in rows]


def accounts(engine: Engine, tenant_id: uuid.UUID) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT owner, balance, pending, version, status FROM accounts WHERE tenant_id = :t"
            ),
            {"t": tenant_id},
        )
        return {owner: tuple(rest) for owner, *rest in rows}


def hold_states(engine: Engine, tenant_id: uuid.UUID) -> dict[str, tuple[Any, ...]]:
    """Every hold's state, naming holds and what settled them by reference id."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT t.reference_id, h.status, h.amount, h.captured_amount,
                       coalesce(c.reference_id, v.reference_id)
                FROM holds h
                JOIN transactions t ON t.id = h.transaction_id
                LEFT JOIN transactions c ON c.id = h.captured_by
                LEFT JOIN transactions v ON v.id = h.voided_by
                WHERE h.tenant_id = :t
                """
            ),
            {"t": tenant_id},
        )
        return {reference: tuple(rest) for reference, *rest in rows}


def journals(engine: Engine, tenant_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every account's entries in version order, naming transactions by reference id."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT a.owner, t.reference_id, e.amount, e.balance_after, e.account_version
                FROM entries e
                JOIN accounts a ON a.id = e.account_id
                JOIN transactions t ON t.id = e.transaction_id
                WHERE e.tenant_id = :t
                ORDER BY a.owner, e.account_version
                """
            ),
            {"t": tenant_id},
        )
        journal: dict[str, list[tuple[Any, ...]]] = {}
        for owner, *line in rows:
            journal.setdefault(owner, []).append(tuple(line))
        return journal


def test_batches_decide_exactly_as_one_transaction_per_commit(engine, database_url):
    # The batches go through the engine the workers use (binary array parameters).
    worker_engine = make_worker_engine(database_url)
    rng = random.Random(SEED)
    ops = random_sequence(rng)
    single_tenant, single_ids = record(engine, ops, "one-at-a-time")
    batched_tenant, batched_ids = record(engine, ops, "batched")

    for transaction_id in single_ids:
        post_transactions(engine, [transaction_id])
    position = 0
    while position < len(batched_ids):
        size = rng.randint(50, 400)
        batch = batched_ids[position : position + size]
        result = post_transactions(worker_engine, batch, fill_to=len(batch))
        assert [o.transaction_id for o in result.outcomes] == batch
        position += size
    worker_engine.dispose()

    single, batched = outcomes(engine, single_tenant), outcomes(engine, batched_tenant)
    assert batched == single
    assert accounts(engine, batched_tenant) == accounts(engine, single_tenant)
    assert hold_states(engine, batched_tenant) == hold_states(engine, single_tenant)
    assert journals(engine, batched_tenant) == journals(engine, single_tenant)
    # The sequence is worth comparing only if it exercised the rules.
    codes = Counter(code for _, status, code in single if status == "rejected")
    assert sum(codes.values()) > COUNT // 5, codes
    assert {
        "insufficient_funds",
        "wallet_frozen",
        "wallet_closed",
        "wallet_not_found",
        "original_not_found",
        "original_not_applied",
        "original_mismatch",
        "refund_exceeds_original",
        "hold_not_found",
        "hold_not_active",
        "capture_exceeds_hold",
    } <= set(codes), codes
    held = Counter(state[0] for state in hold_states(engine, single_tenant).values())
    assert held["captured"] and held["voided"] and held["held"], held
    assert Counter(status for _, status, _ in single)["applied"] > COUNT // 3
    assert_invariants(engine, single_tenant)
    assert_invariants(engine, batched_tenant)
