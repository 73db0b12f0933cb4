"""The shapes of a split's legs and of a journal's postings, checked and normalised.

A request's `splits` and `postings` arrive as whatever JSON the client sent. Every fault of
their shape is refused with one stable code per list (`invalid_splits`, `invalid_postings`)
and a message naming the item and the fault ("splits[2]: ..."); what passes comes back as
plain dicts holding exactly the keys of the contract (ledger/legs.py reads them), amounts
as ints. Whether the accounts they name exist is intake's question, not this module's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ledger.errors import InvalidRequest
from ledger.identifiers import user_id_fault
from ledger.money import MAX_AMOUNT
from ledger.vocabulary import SYSTEM_ACCOUNT_NAME

# fullmatch, not match: `$` would also accept a trailing newline ("EUR\n" is not "EUR").
ASSET_CODE = re.compile(r"[A-Z0-9_]{1,32}")
SYSTEM_ACCOUNT = re.compile(SYSTEM_ACCOUNT_NAME)
MAX_LEGS = 50
MAX_POSTINGS = 100
LEG_DESTINATIONS = ("to_user_id", "to_account")
POSTING_KEYS = ("from", "to", "asset_code", "amount")

INVALID_SPLITS = "invalid_splits"
INVALID_POSTINGS = "invalid_postings"


def amount_fault(value: object) -> str | None:
    """Why a value is not an amount of minor units (1..MAX_AMOUNT), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer of minor units"
    if not 1 <= value <= MAX_AMOUNT:
        return f"must be between 1 and {MAX_AMOUNT}"
    return None


def system_account_fault(value: object) -> str | None:
    """Why a value is not a system account's name, or None."""
    if not isinstance(value, str) or SYSTEM_ACCOUNT.fullmatch(value) is None:
        return f"must match {SYSTEM_ACCOUNT_NAME}"
    return None


def _owner_fault(value: object) -> str | None:
    """Why a value names neither a wallet (a user id) nor a system account (`@name`)."""
    if isinstance(value, str) and value.startswith("@"):
        return system_account_fault(value)
    return user_id_fault(value)


def _fault(code: str, where: str, message: str) -> InvalidRequest:
    field = where.split("[", 1)[0]
    return InvalidRequest(code, f"{where}: {message}", field=field)


def _items(code: str, name: str, value: object, most: int, noun: str) -> list[Mapping[str, Any]]:
    """The list's items, each an object; or the fault of the list or of its first odd item."""
    if not isinstance(value, list) or not 1 <= len(value) <= most:
        raise _fault(code, name, f"1 to {most} {noun}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _fault(code, f"{name}[{index}]", f"each of the {noun} is a JSON object")
    return value


def _unknown_keys(code: str, where: str, item: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(key) for key in item if key not in known)
    if unknown:
        raise _fault(code, where, f"unknown key {unknown[0]!r}")


def checked_legs(
    value: object, *, source: str | None, total: int | None
) -> tuple[list[dict[str, Any]], int]:
    """`splits` as normalised legs and their sum, or InvalidRequest `invalid_splits`.

    `source` is the wallet the money leaves (never a destination); `total` the amount the
    legs must sum to, or None when the sum is to become the amount (a capture without one).
    """
    legs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(_items(INVALID_SPLITS, "splits", value, MAX_LEGS, "legs")):
        where = f"splits[{index}]"
        _unknown_keys(INVALID_SPLITS, where, item, (*LEG_DESTINATIONS, "amount"))
        named = [key for key in LEG_DESTINATIONS if key in item]
        if len(named) == 2:
            raise _fault(INVALID_SPLITS, where, "to_user_id and to_account are exclusive")
        if not named:
            raise _fault(INVALID_SPLITS, where, "to_user_id or to_account is required")
        (key,) = named
        owner = item[key]
        fault = user_id_fault(owner) if key == "to_user_id" else system_account_fault(owner)
        if fault is not None:
            raise _fault(INVALID_SPLITS, where, f"{key} {fault}")
        if owner == source:
            raise _fault(INVALID_SPLITS, where, "the source wallet cannot be a destination")
        if owner in seen:
            raise _fault(INVALID_SPLITS, where, "destination named twice")
        seen.add(owner)
        if "amount" not in item:
            raise _fault(INVALID_SPLITS, where, "amount is required")
        fault = amount_fault(item["amount"])
        if fault is not None:
            raise _fault(INVALID_SPLITS, where, f"amount {fault}")
        legs.append({key: owner, "amount": item["amount"]})
    summed = sum(leg["amount"] for leg in legs)
    if total is not None and summed != total:
        raise _fault(INVALID_SPLITS, "splits", f"amounts sum to {summed}, amount is {total}")
    if summed > MAX_AMOUNT:
        raise _fault(INVALID_SPLITS, "splits", f"amounts sum to {summed}, more than {MAX_AMOUNT}")
    return legs, summed


def checked_postings(value: object) -> list[dict[str, Any]]:
    """`postings` as normalised postings, or InvalidRequest `invalid_postings`."""
    postings: list[dict[str, Any]] = []
    for index, item in enumerate(
        _items(INVALID_POSTINGS, "postings", value, MAX_POSTINGS, "postings")
    ):
        where = f"postings[{index}]"
        _unknown_keys(INVALID_POSTINGS, where, item, POSTING_KEYS)
        for key in POSTING_KEYS:
            if key not in item:
                raise _fault(INVALID_POSTINGS, where, f"{key} is required")
        for key in ("from", "to"):
            fault = _owner_fault(item[key])
            if fault is not None:
                raise _fault(
                    INVALID_POSTINGS, where, f"{key} is a user id or a system account: {fault}"
                )
        if item["from"] == item["to"]:
            raise _fault(INVALID_POSTINGS, where, "from and to are the same account")
        asset_code = item["asset_code"]
        if not isinstance(asset_code, str) or ASSET_CODE.fullmatch(asset_code) is None:
            raise _fault(INVALID_POSTINGS, where, "asset_code must match [A-Z0-9_]{1,32}")
        fault = amount_fault(item["amount"])
        if fault is not None:
            raise _fault(INVALID_POSTINGS, where, f"amount {fault}")
        postings.append({key: item[key] for key in POSTING_KEYS})
    return postings
