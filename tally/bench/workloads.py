"""What the bench sends: funding top-ups, warm-up top-ups and the measured patterns.

uniform: spends and transfers over all wallets; hot: every spend into one account;
holds: a hold on a wallet, then its capture (all of it, or part); splits: marketplace
orders, each a spend in three legs (a seller's wallet, @fees and @tax).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ledger.vocabulary import Scope

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from ledger.tenants import ProvisionedTenant

ASSET = "BENCH"
# Requests per second a bench key may make: the bench measures capacity, not the limiter.
BENCH_RATE_LIMIT = 1_000_000
# Each wallet starts rich enough that no bench transaction is rejected for funds.
FUNDING = 10**12
MAX_AMOUNT = 100
# The system accounts a bench tenant defines: the splits pattern's fee and tax legs.
SPLIT_ACCOUNTS = ("@fees", "@tax")


def seed_tenant(
    engine: Engine, name: str, *, scopes: Iterable[Scope] = (Scope.ADMIN,)
) -> ProvisionedTenant:
    """A tenant of a bench run, the one way the bench and its chaos run make one: a key of
    each of `scopes`, never rate-limited (the bench measures capacity, not the limiter),
    and the bench asset (2 decimal places)."""
    from ledger.audit import OPERATOR
    from ledger.db import unit_of_work
    from ledger.system_accounts import define_system_account
    from ledger.tenants import AssetSpec, provision_tenant

    with unit_of_work(engine) as work:
        tenant = provision_tenant(
            work,
            name,
            scopes=scopes,
            assets=[AssetSpec(ASSET, "Bench units", 2)],
            rate_limit_per_second=BENCH_RATE_LIMIT,
        )
        for account in SPLIT_ACCOUNTS:
            define_system_account(work, tenant.id, account, actor=OPERATOR)
        return tenant


def workload(
    pattern: str, run_id: str, count: int, wallets: int, seed: int
) -> list[dict[str, Any]]:
    """The measured transactions: uniform mixes spends and transfers over all wallets; hot
    sends every transaction into one account (spends from every wallet to @revenue)."""
    rng = random.Random(seed)
    items = []
    for index in range(count):
        user = f"{run_id}-w{rng.randrange(wallets)}"
        item: dict[str, Any] = {
            "asset_code": ASSET,
            "amount": rng.randint(1, MAX_AMOUNT),
            "reference_id": f"{run_id}-{index}",
            "user_id": user,
        }
        if pattern == "splits":
            item.update(type="spend", amount=rng.randint(10, 10 * MAX_AMOUNT))
            item["splits"] = _order_legs(item["amount"], _another(rng, run_id, wallets, user))
        elif pattern == "uniform" and index % 2:
            item.update(type="transfer", to_user_id=_another(rng, run_id, wallets, user))
        else:
            item.update(type="spend", item_id="sku-1")
        items.append(item)
    return items


def _another(rng: random.Random, run_id: str, wallets: int, user: str) -> str:
    """A wallet of the run other than `user`."""
    other = user
    while other == user:
        other = f"{run_id}-w{rng.randrange(wallets)}"
    return other


def _order_legs(amount: int, seller: str) -> list[dict[str, Any]]:
    """A marketplace order's legs: 8 % fee, 2 % tax (each at least one unit), the rest to
    the seller."""
    fee, tax = max(1, amount * 8 // 100), max(1, amount * 2 // 100)
    return [
        {"to_user_id": seller, "amount": amount - fee - tax},
        {"to_account": SPLIT_ACCOUNTS[0], "amount": fee},
        {"to_account": SPLIT_ACCOUNTS[1], "amount": tax},
    ]


# Long enough never to expire during a run: the pattern measures holding and capturing.
HOLD_SECONDS = 3600


def holds_workload(run_id: str, count: int, wallets: int, seed: int) -> list[dict[str, Any]]:
    """The first half of the holds pattern: one hold per transaction, over all wallets."""
    rng = random.Random(seed)
    return [
        {
            "type": "hold",
            "asset_code": ASSET,
            "amount": rng.randint(1, MAX_AMOUNT),
            "reference_id": f"{run_id}-{index}",
            "user_id": f"{run_id}-w{rng.randrange(wallets)}",
            "expires_in": HOLD_SECONDS,
        }
        for index in range(count)
    ]


def captures_for(hold_ids: list[str], run_id: str) -> list[dict[str, Any]]:
    """The second half: a capture of each hold, every other one partial."""
    return [
        {
            "type": "capture",
            "original_transaction_id": hold_id,
            "reference_id": f"{run_id}-capture-{index}",
            **({"amount": 1} if index % 2 else {}),
        }
        for index, hold_id in enumerate(hold_ids)
    ]


def funding(run_id: str, wallets: int) -> list[dict[str, Any]]:
    """One top-up per wallet of the pattern, large enough for the whole run."""
    return [
        {
            "type": "topup",
            "asset_code": ASSET,
            "amount": FUNDING,
            "reference_id": f"{run_id}-fund-{n}",
            "user_id": f"{run_id}-w{n}",
            "payment_method": "bench",
        }
        for n in range(wallets)
    ]


def warm_up_items(run_id: str, count: int, wallets: int) -> list[dict[str, Any]]:
    """Unmeasured one-unit top-ups into the pattern's wallets."""
    return [
        {
            "type": "topup",
            "asset_code": ASSET,
            "amount": 1,
            "reference_id": f"warm-{run_id}-{n}",
            "user_id": f"{run_id}-w{n % wallets}",
        }
        for n in range(count)
    ]


def bodies_for(items: list[dict[str, Any]], bulk_size: int) -> list[bytes]:
    """Request bodies: one item each, or batches of `bulk_size` for the bulk endpoint."""
    if bulk_size <= 1:
        return [json.dumps(item).encode() for item in items]
    return [
        json.dumps({"transactions": items[start : start + bulk_size]}).encode()
        for start in range(0, len(items), bulk_size)
    ]
