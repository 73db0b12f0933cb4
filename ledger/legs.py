"""Legs and postings: where the money of a split transaction or a journal entry goes.

A leg names one destination, a wallet (`to_user_id`) or a system account (`to_account`),
and an amount. Both kinds are accounts of one owner column: user ids never start with `@`,
system account names always do, so a leg is `(owner, amount)` inside the ledger and a
JSON object with one of the two keys outside it. A posting moves an amount of one asset
from one owner to another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Leg:
    """One destination of a split and its amount; `owner` is a user id or an `@name`."""

    owner: str
    amount: int

    @property
    def is_system(self) -> bool:
        return self.owner.startswith("@")

    def as_json(self) -> dict[str, Any]:
        key = "to_account" if self.is_system else "to_user_id"
        return {key: self.owner, "amount": self.amount}


@dataclass(frozen=True)
class Posting:
    """One line of a journal entry: `amount` of `asset_code` from one owner to another."""

    source: str
    target: str
    asset_code: str
    amount: int

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "asset_code": self.asset_code,
            "amount": self.amount,
        }


def leg_owner(leg: Mapping[str, Any]) -> str:
    """The owner a leg's JSON names: its `to_user_id` or its `to_account`."""
    return str(leg.get("to_user_id") or leg["to_account"])


def legs_from_json(value: Iterable[Mapping[str, Any]] | None) -> tuple[Leg, ...] | None:
    if value is None:
        return None
    return tuple(Leg(leg_owner(leg), int(leg["amount"])) for leg in value)


def legs_to_json(legs: Iterable[Leg] | None) -> list[dict[str, Any]] | None:
    return None if legs is None else [leg.as_json() for leg in legs]


def postings_from_json(value: Iterable[Mapping[str, Any]] | None) -> tuple[Posting, ...] | None:
    if value is None:
        return None
    return tuple(
        Posting(str(p["from"]), str(p["to"]), str(p["asset_code"]), int(p["amount"])) for p in value
    )


def allocate_pro_rata(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `weights` (non-negative, not all zero), in whole units.

    The largest-remainder rule: each share is first rounded down; the units left over go
    one each to the shares whose rounding dropped the most, ties to the earlier share. The
    shares sum to `total`, and none exceeds its weight when `total` does not exceed the sum.
    """
    whole = sum(weights)
    if whole <= 0:
        raise ValueError("weights must sum to more than zero")
    shares = [total * weight // whole for weight in weights]
    dropped = [total * weight % whole for weight in weights]
    left = total - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: (-dropped[i], i))[:left]:
        shares[index] += 1
    return shares
