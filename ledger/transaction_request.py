"""What a client asks the ledger to do, checked by the ledger itself, not only at the edge."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from ledger.errors import InvalidRequest
from ledger.identifiers import check_reference_id, check_user_id
from ledger.money import MAX_AMOUNT
from ledger.vocabulary import HOLD_ACTIONS, TransactionType

# fullmatch, not match: `$` would also accept a trailing newline ("alice\n" is not "alice").
ASSET_CODE = re.compile(r"[A-Z0-9_]{1,32}")
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


# Holds last 7 days unless the request says otherwise, and 30 days at the most.
DEFAULT_HOLD_SECONDS = 7 * 86_400
MAX_HOLD_SECONDS = 30 * 86_400

# Which types name a second wallet (to_user_id), and which name an original transaction.
TO_USER_TYPES = frozenset({TransactionType.TRANSFER, TransactionType.HOLD})
ORIGINAL_TYPES = frozenset({TransactionType.REFUND, *HOLD_ACTIONS})


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

    def validated(
        self, max_metadata_bytes: int = MAX_METADATA_BYTES, *, now: datetime | None = None
    ) -> TransactionRequest:
        """This request, or InvalidRequest naming the first field that breaks a rule."""
        if self.type not in list(TransactionType):
            raise InvalidRequest(
                "invalid_type", f"type must be one of {', '.join(TransactionType)}", field="type"
            )
        kind = TransactionType(self.type)
        check_reference_id(self.reference_id)
        if kind in HOLD_ACTIONS:
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
        _check_text(self.reason, "reason", required=self.type == TransactionType.ADJUSTMENT)
        for name in ("payment_method", "bonus_type", "item_id"):
            _check_text(getattr(self, name), name)
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
        return self

    def _check_to_user(self, kind: TransactionType) -> None:
        if kind not in TO_USER_TYPES:
            if self.to_user_id is not None:
                raise _unexpected("to_user_id", kind)
            return
        if kind == TransactionType.TRANSFER or self.to_user_id is not None:
            check_user_id(self.to_user_id, "to_user_id")
        if self.to_user_id == self.user_id:
            raise InvalidRequest(
                "same_wallet", "to_user_id must differ from user_id", field="to_user_id"
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
        # Fields added with holds count only when given: older requests keep their hash.
        for name in ("expires_in", "expires_at"):
            if body[name] is None:
                del body[name]
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at.isoformat()
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def credited_wallets(self) -> list[tuple[str, str]]:
        """(asset_code, owner) of the wallets this request would credit: created on first use
        when it is accepted."""
        if self.user_id is None or self.asset_code is None:
            return []
        if self.type in (TransactionType.TOPUP, TransactionType.BONUS) or (
            self.type == TransactionType.ADJUSTMENT and self.amount is not None and self.amount > 0
        ):
            return [(self.asset_code, self.user_id)]
        # A hold's destination must exist when the hold is judged, as a transfer's target.
        if self.type in TO_USER_TYPES and self.to_user_id:
            return [(self.asset_code, self.to_user_id)]
        return []


_FIELD_NAMES = tuple(f.name for f in fields(TransactionRequest))
