"""What a client asks the ledger to do, checked by the ledger itself, not only at the edge."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from ledger.errors import InvalidRequest
from ledger.identifiers import check_reference_id, check_user_id
from ledger.money import MAX_AMOUNT
from ledger.request_legs import ASSET_CODE, checked_legs, checked_postings, system_account_fault
from ledger.vocabulary import HOLD_ACTIONS, TransactionType

MAX_TEXT = 128
MAX_METADATA_BYTES = 4096
# Objects and arrays nested deeper are refused: the JSON encoders recurse, and a few hundred
# levels (a body of a kilobyte) would exhaust Python's stack, a 500 instead of a 422.
MAX_METADATA_DEPTH = 32


def check_amount(amount: object, *, signed: bool = False, name: str = "amount") -> int:
    """A plain int of minor units, non-zero, within MAX_AMOUNT, positive unless signed."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest(
            "invalid_amount", "amount must be an integer of minor units", field=name
        )
    if amount == 0 or abs(amount) > MAX_AMOUNT or (amount < 0 and not signed):
        bound = (
            f"between 1 and {MAX_AMOUNT}" if not signed else f"non-zero, |amount| <= {MAX_AMOUNT}"
        )
        raise InvalidRequest("invalid_amount", f"amount must be {bound}", field=name)
    return amount


def check_asset_code(value: object, name: str = "asset_code") -> str:
    if not isinstance(value, str) or not ASSET_CODE.fullmatch(value):
        raise InvalidRequest(
            "invalid_asset_code", f"{name} must match [A-Z0-9_]{{1,32}}", field=name
        )
    return value


def _check_text(value: object, name: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidRequest("missing_field", f"{name} is required", field=name)
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT or _unstorable(value):
        raise InvalidRequest("invalid_field", f"{name} must be 1-{MAX_TEXT} characters", field=name)
    return value


# NUL, or an unpaired surrogate (JSON can escape one, UTF-8 cannot encode it).
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _unstorable(text: str) -> bool:
    return UNSTORABLE.search(text) is not None


def _metadata_fault(metadata: dict[str, Any]) -> str | None:
    """Why metadata is not JSON that jsonb can store, or None. A loop, not recursion: absurd
    (or circular) nesting is refused before anything recurses into it."""
    pending: list[tuple[object, int]] = [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _unstorable(value):
                return "metadata cannot contain NUL characters or unpaired surrogates"
        elif isinstance(value, dict | list):
            if depth > MAX_METADATA_DEPTH:
                return f"metadata must nest at most {MAX_METADATA_DEPTH} levels deep"
            if isinstance(value, dict):
                # json.dumps would turn 1 into "1": the stored object would not be the one sent.
                if not all(isinstance(key, str) for key in value):
                    return "metadata keys must be strings"
                pending.extend((key, depth) for key in value)
                value = list(value.values())
            pending.extend((item, depth + 1) for item in value)
        elif value is not None and not isinstance(value, int | float):
            return "metadata must hold only JSON values"
    return None


# How far before its submission a movement may count (TALLY_MAX_BACKDATE_SECONDS), and how
# far after: a client's clock a little ahead is not a future-dated movement.
MAX_BACKDATE_SECONDS = 30 * 86_400
MAX_EFFECTIVE_AHEAD_SECONDS = 60

# Holds last 7 days unless the request says otherwise, and 30 days at the most.
DEFAULT_HOLD_SECONDS = 7 * 86_400
MAX_HOLD_SECONDS = 30 * 86_400

# Which types name a second wallet (to_user_id), and which name an original transaction.
TO_USER_TYPES = frozenset({TransactionType.TRANSFER, TransactionType.HOLD})
ORIGINAL_TYPES = frozenset({TransactionType.REFUND, *HOLD_ACTIONS})
# An exchange may name its buyer (by default the seller itself): to_user_id, optional.
BUYER_TYPES = frozenset({TransactionType.EXCHANGE})
# Which types may split their amount over legs (`splits`).
SPLIT_TYPES = frozenset(
    {
        TransactionType.SPEND,
        TransactionType.TRANSFER,
        TransactionType.HOLD,
        TransactionType.CAPTURE,
        TransactionType.REFUND,
    }
)
# The fields of one type only.
PAYOUT_FIELDS = ("payout_method", "destination")
EXCHANGE_FIELDS = ("to_asset_code", "to_amount")
# A journal names no wallet, asset or amount of its own: its postings do. Nor does it take
# the descriptive fields of other types.
NOT_OF_JOURNALS = ("user_id", "asset_code", "amount", "payment_method", "bonus_type", "item_id")
# Fields added with splits, payouts, exchanges and journals: they count in a request's
# fingerprint only when given, so that older requests keep their hash.
ADDED_FIELDS = ("splits", "to_account", *PAYOUT_FIELDS, *EXCHANGE_FIELDS, "postings")


def _unexpected(name: str, kind: str) -> InvalidRequest:
    return InvalidRequest("unexpected_field", f"{name} is not a field of a {kind}", field=name)


@dataclass(frozen=True)
class TransactionRequest:
    """One submission: a transaction type and its fields, amounts in minor units.

    A capture or void names only its hold (and a capture maybe an amount): the wallet is
    the hold's. Every other type names a wallet, an asset and an amount.
    """

    type: str
    reference_id: str
    user_id: str | None = None
    asset_code: str | None = None
    amount: int | None = None
    to_user_id: str | None = None
    original_transaction_id: uuid.UUID | None = None
    payment_method: str | None = None
    bonus_type: str | None = None
    item_id: str | None = None
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    expires_in: int | None = None
    expires_at: datetime | None = None
    # Where the amount goes, leg by leg: [{"to_user_id" | "to_account": ..., "amount": n}].
    splits: list[dict[str, Any]] | None = None
    # A hold's destination when it is a system account (`@payouts`), not a wallet.
    to_account: str | None = None
    payout_method: str | None = None
    destination: str | None = None
    # An exchange: the asset bought and how much of it.
    to_asset_code: str | None = None
    to_amount: int | None = None
    # A journal's lines: [{"from": ..., "to": ..., "asset_code": ..., "amount": n}].
    postings: list[dict[str, Any]] | None = None
    # When the movement counts for reporting, if not when it is applied (ledger time).
    effective_at: datetime | None = None

    def validated(
        self,
        max_metadata_bytes: int = MAX_METADATA_BYTES,
        *,
        now: datetime | None = None,
        max_backdate_seconds: int = MAX_BACKDATE_SECONDS,
    ) -> TransactionRequest:
        """This request, or InvalidRequest naming the first field that breaks a rule.

        Legs and postings come back normalised (ledger/request_legs.py), and a capture that
        splits without an amount gets its legs' sum as its amount; a request with neither
        comes back as it is.
        """
        if self.type not in list(TransactionType):
            raise InvalidRequest(
                "invalid_type", f"type must be one of {', '.join(TransactionType)}", field="type"
            )
        kind = TransactionType(self.type)
        check_reference_id(self.reference_id)
        if kind == TransactionType.JOURNAL:
            for name in (*NOT_OF_JOURNALS, "to_user_id"):
                if getattr(self, name) is not None:
                    raise _unexpected(name, kind)
        elif kind in HOLD_ACTIONS:
            for name in ("user_id", "asset_code", "to_user_id"):
                if getattr(self, name) is not None:
                    raise _unexpected(name, kind)
            if self.amount is not None:
                if kind == TransactionType.VOID:
                    raise _unexpected("amount", kind)
                check_amount(self.amount)
        else:
            check_user_id(self.user_id)
            check_asset_code(self.asset_code)
            check_amount(self.amount, signed=kind == TransactionType.ADJUSTMENT)
        self._check_to_user(kind)
        if kind in ORIGINAL_TYPES:
            if not isinstance(self.original_transaction_id, uuid.UUID):
                raise InvalidRequest(
                    "missing_field",
                    f"original_transaction_id is required for a {kind}",
                    field="original_transaction_id",
                )
        elif self.original_transaction_id is not None:
            raise _unexpected("original_transaction_id", kind)
        self._check_expiry(kind, now or datetime.now(UTC))
        self._check_effective_at(now or datetime.now(UTC), max_backdate_seconds)
        needs_reason = kind in (TransactionType.ADJUSTMENT, TransactionType.JOURNAL)
        _check_text(self.reason, "reason", required=needs_reason)
        for name in ("payment_method", "bonus_type", "item_id"):
            _check_text(getattr(self, name), name)
        self._check_own_fields(kind, PAYOUT_FIELDS, TransactionType.PAYOUT)
        for name in PAYOUT_FIELDS:
            _check_text(getattr(self, name), name)
        self._check_exchange(kind)
        if not isinstance(self.metadata, dict):
            raise InvalidRequest(
                "invalid_metadata", "metadata must be a JSON object", field="metadata"
            )
        fault = _metadata_fault(self.metadata)
        if fault is not None:
            raise InvalidRequest("invalid_metadata", fault, field="metadata")
        try:
            # allow_nan=False: NaN and Infinity are not JSON, and jsonb refuses them.
            encoded = json.dumps(self.metadata, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            raise InvalidRequest(
                "invalid_metadata", "metadata must be a JSON object", field="metadata"
            ) from None
        if len(encoded) > max_metadata_bytes:
            raise InvalidRequest(
                "metadata_too_large",
                f"metadata must encode to at most {max_metadata_bytes} bytes",
                field="metadata",
            )
        return self._normalised(kind)

    def _normalised(self, kind: TransactionType) -> TransactionRequest:
        """This request with its legs and postings checked and in their plain form."""
        if kind not in SPLIT_TYPES and self.splits is not None:
            raise _unexpected("splits", kind)
        if kind != TransactionType.JOURNAL and self.postings is not None:
            raise _unexpected("postings", kind)
        if kind == TransactionType.JOURNAL and self.postings is None:
            raise InvalidRequest(
                "missing_field", "postings is required for a journal", field="postings"
            )
        if self.splits is None and self.postings is None:
            return self
        changes: dict[str, Any] = {}
        if self.splits is not None:
            source = None if kind in HOLD_ACTIONS else self.user_id
            legs, summed = checked_legs(self.splits, source=source, total=self.amount)
            changes = {"splits": legs, "amount": summed}
        if self.postings is not None:
            changes["postings"] = checked_postings(self.postings)
        return replace(self, **changes)

    def _check_to_user(self, kind: TransactionType) -> None:
        if kind != TransactionType.HOLD and self.to_account is not None:
            raise _unexpected("to_account", kind)
        if kind in BUYER_TYPES:
            # The buyer may be the seller: an exchange between two assets of one wallet.
            if self.to_user_id is not None:
                check_user_id(self.to_user_id, "to_user_id")
            return
        if kind not in TO_USER_TYPES:
            if self.to_user_id is not None:
                raise _unexpected("to_user_id", kind)
            return
        if self.splits is not None:
            given = [n for n in ("to_user_id", "to_account") if getattr(self, n) is not None]
            if given:
                raise InvalidRequest(
                    "invalid_splits",
                    f"splits: a {kind} names splits or {given[0]}, not both",
                    field="splits",
                )
            return
        if self.to_account is not None:
            if self.to_user_id is not None:
                raise InvalidRequest(
                    "unexpected_field",
                    "to_account: a hold names to_user_id or to_account, not both",
                    field="to_account",
                )
            fault = system_account_fault(self.to_account)
            if fault is not None:
                raise InvalidRequest("invalid_field", f"to_account {fault}", field="to_account")
            return
        if kind == TransactionType.TRANSFER or self.to_user_id is not None:
            check_user_id(self.to_user_id, "to_user_id")
        if self.to_user_id == self.user_id:
            raise InvalidRequest(
                "same_wallet", "to_user_id must differ from user_id", field="to_user_id"
            )

    def _check_own_fields(
        self, kind: TransactionType, names: tuple[str, ...], owner: TransactionType
    ) -> None:
        if kind != owner:
            for name in names:
                if getattr(self, name) is not None:
                    raise _unexpected(name, kind)

    def _check_exchange(self, kind: TransactionType) -> None:
        self._check_own_fields(kind, EXCHANGE_FIELDS, TransactionType.EXCHANGE)
        if kind != TransactionType.EXCHANGE:
            return
        for name in EXCHANGE_FIELDS:
            if getattr(self, name) is None:
                raise InvalidRequest(
                    "missing_field", f"{name} is required for an exchange", field=name
                )
        check_asset_code(self.to_asset_code, "to_asset_code")
        check_amount(self.to_amount, name="to_amount")
        if self.to_asset_code == self.asset_code:
            raise InvalidRequest(
                "same_asset", "to_asset_code must differ from asset_code", field="to_asset_code"
            )

    def _check_expiry(self, kind: TransactionType, now: datetime) -> None:
        if kind != TransactionType.HOLD:
            for name in ("expires_in", "expires_at"):
                if getattr(self, name) is not None:
                    raise _unexpected(name, kind)
            return
        if self.expires_in is not None and self.expires_at is not None:
            raise InvalidRequest(
                "invalid_expiry", "give expires_in or expires_at, not both", field="expires_at"
            )
        if self.expires_in is not None and (
            isinstance(self.expires_in, bool)
            or not isinstance(self.expires_in, int)
            or not 1 <= self.expires_in <= MAX_HOLD_SECONDS
        ):
            raise InvalidRequest(
                "invalid_expiry",
                f"expires_in must be 1 to {MAX_HOLD_SECONDS} seconds",
                field="expires_in",
            )
        if self.expires_at is not None:
            if not isinstance(self.expires_at, datetime) or self.expires_at.tzinfo is None:
                raise InvalidRequest(
                    "invalid_expiry",
                    "expires_at must be a date-time with a time zone",
                    field="expires_at",
                )
            ahead = (self.expires_at - now).total_seconds()
            if not 0 < ahead <= MAX_HOLD_SECONDS:
                raise InvalidRequest(
                    "invalid_expiry",
                    "expires_at must be in the future, at most 30 days ahead",
                    field="expires_at",
                )

    def _check_effective_at(self, now: datetime, max_backdate_seconds: int) -> None:
        """A backdated movement within the window, or one a moment ahead (clocks differ)."""
        when = self.effective_at
        if when is None:
            return
        if not isinstance(when, datetime) or when.tzinfo is None:
            raise InvalidRequest(
                "invalid_effective_at",
                "effective_at must be a date-time with a time zone",
                field="effective_at",
            )
        if (when - now).total_seconds() > MAX_EFFECTIVE_AHEAD_SECONDS:
            raise InvalidRequest(
                "effective_at_in_future",
                f"effective_at may be at most {MAX_EFFECTIVE_AHEAD_SECONDS} s ahead",
                field="effective_at",
            )
        if (now - when).total_seconds() > max_backdate_seconds:
            raise InvalidRequest(
                "effective_at_too_old",
                f"effective_at may be at most {max_backdate_seconds} s in the past",
                field="effective_at",
            )

    def expires_in_seconds(self) -> int | None:
        """A hold's lifetime from its acceptance, when it is not given as `expires_at`."""
        if self.type != TransactionType.HOLD or self.expires_at is not None:
            return None
        return self.expires_in or DEFAULT_HOLD_SECONDS

    def fingerprint(self) -> str:
        """SHA-256 of the canonical request: same body, same fingerprint."""
        # The fields as they are (not `asdict`, which deep-copies the metadata for nothing):
        # the JSON below is the same, so are the hashes stored before.
        body = {name: getattr(self, name) for name in _FIELD_NAMES}
        body["original_transaction_id"] = (
            str(self.original_transaction_id) if self.original_transaction_id else None
        )
        # Fields added with holds and later count only when given: older requests keep their
        # hash.
        for name in ("expires_in", "expires_at", *ADDED_FIELDS):
            if body[name] is None:
                del body[name]
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at.isoformat()
        if self.effective_at is None:
            del body["effective_at"]
        else:
            body["effective_at"] = self.effective_at.isoformat()
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def credited_wallets(self) -> list[tuple[str, str]]:
        """(asset_code, owner) of the wallets this request would credit: created on first use
        when it is accepted. Not a split's legs: intake creates those itself."""
        if self.type == TransactionType.JOURNAL:
            owners = [
                (str(posting["asset_code"]), str(posting["to"]))
                for posting in self.postings or ()
                if not str(posting["to"]).startswith("@")
            ]
            return list(dict.fromkeys(owners))
        if self.user_id is None or self.asset_code is None:
            return []
        if self.type == TransactionType.EXCHANGE and self.to_asset_code is not None:
            return [(self.to_asset_code, self.to_user_id or self.user_id)]
        if self.type in (TransactionType.TOPUP, TransactionType.BONUS) or (
            self.type == TransactionType.ADJUSTMENT and self.amount is not None and self.amount > 0
        ):
            return [(self.asset_code, self.user_id)]
        # A hold's destination must exist when the hold is judged, as a transfer's target.
        if self.type in TO_USER_TYPES and self.to_user_id:
            return [(self.asset_code, self.to_user_id)]
        return []

    def named_system_accounts(self) -> set[str]:
        """Every system account (`@name`) the request names: intake checks they exist."""
        named = {str(leg["to_account"]) for leg in self.splits or () if "to_account" in leg}
        if self.to_account is not None:
            named.add(self.to_account)
        for posting in self.postings or ():
            named |= {str(posting[end]) for end in ("from", "to")}
        return {name for name in named if name.startswith("@")}

    def named_assets(self) -> set[str]:
        """The asset codes the request names besides `asset_code`: intake checks they exist."""
        named = {str(posting["asset_code"]) for posting in self.postings or ()}
        if self.to_asset_code is not None:
            named.add(self.to_asset_code)
        return named


_FIELD_NAMES = tuple(f.name for f in fields(TransactionRequest))
