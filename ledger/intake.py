"""Intake: recording submissions durably and idempotently, before any worker sees them.

One path for one submission and for a thousand: a single submission is a batch of one.
Every request is validated by the ledger itself, recorded with one set-based INSERT, and
answered on its own terms (new, replayed, or the error it alone ran into); the new ids are
published only after the commit.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from ledger.db import UnitOfWork, retry_on_conflict
from ledger.errors import (
    AdminKeyRequired,
    AssetNotFound,
    IdempotencyKeyReused,
    InvalidRequest,
    KeyRevoked,
    LedgerError,
)
from ledger.known_names import KnownNames
from ledger.queries import transaction_views
from ledger.system_accounts import known_system_accounts
from ledger.transaction_request import (
    MAX_BACKDATE_SECONDS,
    MAX_METADATA_BYTES,
    TransactionRequest,
)
from ledger.views import transaction_view
from ledger.vocabulary import TransactionType

# Runs of a multi-row insert that PostgreSQL aborted on a deadlock (`_insert_rows`).
MAX_INTAKE_ATTEMPTS = 3
INTAKE_BACKOFF_SECONDS = 0.01

# Set-based: positions kept so `seq` (the order of application) follows the batch. Rows
# naming an asset the tenant lacks are left out (no foreign-key error aborts the batch);
# the caller tells them apart from replays afterwards. A capture or void takes its wallet
# (and a capture its destination or legs, unless it names its own) from the hold it
# names, when that is a hold of this tenant; a refund of a capture that paid a wallet takes
# that wallet as the one it debits; a hold's expiry is counted from its acceptance, on the
# database's clock. The same statement creates the wallets the new rows credit, legs
# included (sorted: concurrent intakes take the unique-index locks in one order) and, for a
# request made with an API key, checks that the key is still live, so a write needs no
# round trip of its own for either. The hold and the paid capture are looked up per row
# (LATERAL ... LIMIT 1): the API runs generic plans, and a generic plan joining `unnest`
# (estimated at many rows) to `transactions` chose to scan the whole table once the table
# grew, for every submission.
INSERT_TRANSACTIONS = text(
    """
    WITH inserted AS (
        INSERT INTO transactions (
            tenant_id, type, reference_id, request_hash, asset_code, amount, user_id,
            to_user_id, original_transaction_id, payment_method, bonus_type, item_id, reason,
            metadata, expires_at, splits, to_account, payout_method, destination,
            to_asset_code, to_amount, postings, effective_at
        )
        SELECT :tenant_id, r.type, r.reference_id, r.request_hash,
               coalesce(r.asset_code, hold.asset_code), r.amount,
               coalesce(r.user_id, hold.user_id),
               coalesce(r.to_user_id,
                        CASE WHEN r.type = 'capture' AND r.splits IS NULL THEN hold.to_user_id END,
                        paid.to_user_id),
               r.original_transaction_id, r.payment_method, r.bonus_type, r.item_id, r.reason,
               r.metadata,
               coalesce(r.expires_at, now() + make_interval(secs => r.expires_in)),
               coalesce(r.splits, CASE WHEN r.type = 'capture' THEN hold.splits END),
               coalesce(r.to_account,
                        CASE WHEN r.type = 'capture' AND r.splits IS NULL THEN hold.to_account END),
               r.payout_method, r.destination, r.to_asset_code, r.to_amount, r.postings,
               r.effective_at
        FROM unnest(
            CAST(:types AS text[]), CAST(:reference_ids AS text[]),
            CAST(:request_hashes AS text[]), CAST(:asset_codes AS text[]),
            CAST(:amounts AS numeric[]), CAST(:user_ids AS text[]), CAST(:to_user_ids AS text[]),
            CAST(:original_transaction_ids AS uuid[]), CAST(:payment_methods AS text[]),
            CAST(:bonus_types AS text[]), CAST(:item_ids AS text[]), CAST(:reasons AS text[]),
            CAST(:metadata AS jsonb[]), CAST(:expires_ats AS timestamptz[]),
            CAST(:expires_ins AS integer[]), CAST(:splits AS jsonb[]),
            CAST(:to_accounts AS text[]), CAST(:payout_methods AS text[]),
            CAST(:destinations AS text[]), CAST(:to_asset_codes AS text[]),
            CAST(:to_amounts AS numeric[]), CAST(:postings AS jsonb[]),
            CAST(:effective_ats AS timestamptz[])
        ) WITH ORDINALITY AS r(
            type, reference_id, request_hash, asset_code, amount, user_id, to_user_id,
            original_transaction_id, payment_method, bonus_type, item_id, reason, metadata,
            expires_at, expires_in, splits, to_account, payout_method, destination,
            to_asset_code, to_amount, postings, effective_at, position
        )
        LEFT JOIN LATERAL (
            SELECT h.asset_code, h.user_id, h.to_user_id, h.splits, h.to_account
            FROM transactions h
            WHERE r.type IN ('capture', 'void') AND h.tenant_id = :tenant_id
              AND h.id = r.original_transaction_id AND h.type = 'hold'
            LIMIT 1
        ) hold ON true
        LEFT JOIN LATERAL (
            SELECT p.to_user_id FROM transactions p
            WHERE r.type = 'refund' AND p.tenant_id = :tenant_id
              AND p.id = r.original_transaction_id AND p.type = 'capture'
            LIMIT 1
        ) paid ON true
        WHERE (r.type IN ('capture', 'void', 'journal') OR EXISTS (
                   SELECT 1 FROM assets a WHERE a.tenant_id = :tenant_id AND a.code = r.asset_code))
          AND (CAST(:key_id AS uuid) IS NULL OR EXISTS (
                   SELECT 1 FROM api_keys k
                   WHERE k.id = CAST(:key_id AS uuid) AND k.revoked_at IS NULL))
        ORDER BY r.position
        ON CONFLICT (tenant_id, reference_id) DO NOTHING
        RETURNING *
    ), wallets AS (
        INSERT INTO accounts (tenant_id, asset_code, owner, is_system)
        SELECT :tenant_id, w.asset_code, w.owner, false
        FROM (
            SELECT w.asset_code, w.owner
            FROM unnest(CAST(:wallet_references AS text[]), CAST(:wallet_assets AS text[]),
                        CAST(:wallet_owners AS text[])) AS w(reference_id, asset_code, owner)
            WHERE w.reference_id IN (SELECT reference_id FROM inserted)
            UNION
            SELECT i.asset_code, leg ->> 'to_user_id'
            FROM inserted i CROSS JOIN LATERAL jsonb_array_elements(i.splits) AS leg
            WHERE i.type <> 'refund' AND i.asset_code IS NOT NULL AND leg ? 'to_user_id'
        ) w
        ORDER BY w.asset_code, w.owner
        ON CONFLICT (tenant_id, asset_code, owner) DO NOTHING
    )
    SELECT * FROM inserted
    """
)
# Which of some codes are the tenant's assets: asked only for requests that name one
# beyond their own asset, so a plain submission costs no round trip more.
# The close lock: intake holds it shared while it checks and records a backdated
# submission; a close (ledger/periods.py) holds it exclusively.
SHARE_CLOSE_LOCK = text(
    "SELECT pg_advisory_xact_lock_shared(hashtextextended('tally-close:' || :tenant_id, 0))"
)
CLOSED_THROUGH = text("SELECT closed_through FROM tenants WHERE id = :tenant_id")
# Assets are never removed: each process remembers those it has seen.
ASSETS_SEEN = KnownNames()
KNOWN_ASSETS = text("SELECT code FROM assets WHERE tenant_id = :tenant_id AND code = ANY(:codes)")
KEY_IS_LIVE = text(
    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = :key_id AND revoked_at IS NULL)"
)
EXISTING_BY_REFERENCE = text(
    "SELECT * FROM transactions WHERE tenant_id = :tenant_id AND reference_id = ANY(:references)"
)
# Sorted multi-row insert: concurrent intakes take the unique-index locks in the same order.
ENSURE_WALLETS = text(
    """
    INSERT INTO accounts (tenant_id, asset_code, owner, is_system)
    SELECT :tenant_id, k.asset_code, k.owner, false
    FROM unnest(CAST(:asset_codes AS text[]), CAST(:owners AS text[])) AS k(asset_code, owner)
    ORDER BY k.asset_code, k.owner
    ON CONFLICT (tenant_id, asset_code, owner) DO NOTHING
    """
)


# Types only admin keys may submit, and what a request with another key is told.
ADMIN_TYPES = {
    TransactionType.ADJUSTMENT: "Adjustments need an admin API key.",
    TransactionType.JOURNAL: "Journal entries need an admin API key.",
}

IS_ACCEPTED = text(
    "SELECT EXISTS (SELECT 1 FROM transactions WHERE tenant_id = :t AND reference_id = :r)"
)


@dataclass(frozen=True)
class Submission:
    """The recorded transaction, and whether it was recorded by an earlier, identical request."""

    transaction: dict[str, Any]
    replayed: bool

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self.transaction["id"])


Result = Submission | LedgerError


def accept_transactions(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    requests: Sequence[TransactionRequest],
    *,
    admin: bool,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
    key_id: uuid.UUID | None = None,
    max_backdate_seconds: int = MAX_BACKDATE_SECONDS,
) -> list[Result]:
    """The intake use case: record many requests, each on its own terms, and publish the
    new ids once the unit of work has committed.

    One result per request, in order: a new or replayed Submission, or the LedgerError
    (not allowed, invalid, unknown asset, reference id reused for another body) that request
    alone ran into. A reference id repeated inside the batch is recorded once; later
    copies are replays. `admin` says whether the caller may submit adjustments. With
    `key_id`, nothing is recorded unless that API key is live (KeyRevoked).
    """
    results: list[Result | None] = [None] * len(requests)
    checked: dict[int, TransactionRequest] = {}
    for index, request in enumerate(requests):
        try:
            if request.type in ADMIN_TYPES and not admin:
                raise AdminKeyRequired(ADMIN_TYPES[TransactionType(request.type)])
            checked[index] = request.validated(
                max_metadata_bytes, max_backdate_seconds=max_backdate_seconds
            )
        except LedgerError as error:
            results[index] = error
    _check_names(work.connection, tenant_id, checked, results)
    _check_open_periods(work.connection, tenant_id, checked, results)
    if checked:
        _insert(work.connection, tenant_id, checked, results, key_id)
    accepted = [result for result in results if result is not None]
    work.publish(
        [r.transaction["id"] for r in accepted if isinstance(r, Submission) and not r.replayed]
    )
    return accepted


def accept_transaction(
    work: UnitOfWork,
    tenant_id: uuid.UUID,
    request: TransactionRequest,
    *,
    admin: bool,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
) -> Submission:
    """`accept_transactions` for one request; its LedgerError is raised."""
    return sole_submission(
        accept_transactions(
            work, tenant_id, [request], admin=admin, max_metadata_bytes=max_metadata_bytes
        )
    )


def sole_submission(results: list[Result]) -> Submission:
    """The one result of a batch of one, or its LedgerError raised."""
    (result,) = results
    if isinstance(result, LedgerError):
        raise result
    return result


def is_accepted(conn: Connection, tenant_id: uuid.UUID, reference_id: str) -> bool:
    """Whether the tenant has had a transaction with this reference id accepted."""
    return bool(conn.execute(IS_ACCEPTED, {"t": tenant_id, "r": reference_id}).scalar())


def _insert(
    conn: Connection,
    tenant_id: uuid.UUID,
    checked: dict[int, TransactionRequest],
    results: list[Result | None],
    key_id: uuid.UUID | None,
) -> None:
    """Insert the first request of each reference id and answer every checked one."""
    first_of: dict[str, int] = {}
    for index, request in checked.items():
        first_of.setdefault(request.reference_id, index)
    fresh = [checked[index] for index in sorted(first_of.values())]
    inserted = {
        row["reference_id"]: row for row in _insert_rows(conn, _columns(tenant_id, fresh, key_id))
    }
    existing: dict[str, RowMapping] = {}
    missing = [reference for reference in first_of if reference not in inserted]
    # Nothing inserted: a replay, an unknown asset, or a key revoked since it was cached.
    nothing_new = bool(missing) and not inserted
    if nothing_new and key_id is not None and not _key_is_live(conn, key_id):
        raise KeyRevoked("The API key is unknown or revoked.")
    if missing:
        rows = conn.execute(
            EXISTING_BY_REFERENCE, {"tenant_id": tenant_id, "references": missing}
        ).mappings()
        existing = {row["reference_id"]: row for row in rows}
    shown = dict(zip(existing, transaction_views(conn, list(existing.values())), strict=True))

    # Copies of a reference whose first request named an unknown asset get a turn of
    # their own: the first valid one of them is recorded.
    again: dict[int, TransactionRequest] = {}
    for index, request in checked.items():
        reference = request.reference_id
        row = inserted.get(reference) or existing.get(reference)
        if row is None:
            if first_of[reference] == index:
                results[index] = AssetNotFound(
                    f"asset {request.asset_code} does not exist", field="asset_code"
                )
            else:
                again[index] = request
        elif reference in inserted and first_of[reference] == index:
            results[index] = Submission(transaction_view(row, {}), replayed=False)
        else:
            # A copy of a reference inserted by this very batch replays its fresh view.
            view = shown.get(reference) or transaction_view(row, {})
            results[index] = _replay(row, request, view)
    if again:
        _insert(conn, tenant_id, again, results, key_id)


def _check_names(
    conn: Connection,
    tenant_id: uuid.UUID,
    checked: dict[int, TransactionRequest],
    results: list[Result | None],
) -> None:
    """Answer 422 to (and drop from `checked`) each request naming a system account the
    tenant has not defined, or an asset it lacks besides its own `asset_code` (an exchange's
    two, a journal's)."""
    names = {n for r in checked.values() for n in r.named_system_accounts()}
    codes = {c for r in checked.values() for c in _named_assets(r)}
    if not names and not codes:
        return
    known = known_system_accounts(conn, tenant_id, names)
    unseen = ASSETS_SEEN.unseen(tenant_id, codes)
    assets = codes - unseen
    if unseen:
        params = {"tenant_id": tenant_id, "codes": sorted(unseen)}
        found = set(conn.execute(KNOWN_ASSETS, params).scalars())
        ASSETS_SEEN.remember(tenant_id, found)
        assets |= found
    for index, request in list(checked.items()):
        unknown = sorted(request.named_system_accounts() - known)
        missing = sorted(_named_assets(request) - assets)
        if unknown:
            results[index] = InvalidRequest(
                "unknown_system_account", f"system account {unknown[0]} does not exist"
            )
        elif missing:
            results[index] = InvalidRequest("unknown_asset", f"asset {missing[0]} does not exist")
        else:
            continue
        del checked[index]


def _check_open_periods(
    conn: Connection,
    tenant_id: uuid.UUID,
    checked: dict[int, TransactionRequest],
    results: list[Result | None],
) -> None:
    """Answer 422 `period_closed` to (and drop) each request effective at or before the
    tenant's closed-through time. Under the close lock, shared (ledger/periods.py takes it
    exclusively): a close either sees this commit's queued rows and refuses, or commits
    first and this reads its time. Only requests that name an `effective_at` ask: the
    others count from their application, after any close."""
    dated = {index: r.effective_at for index, r in checked.items() if r.effective_at}
    if not dated:
        return
    conn.execute(SHARE_CLOSE_LOCK, {"tenant_id": tenant_id})
    closed = conn.execute(CLOSED_THROUGH, {"tenant_id": tenant_id}).scalar()
    if closed is None:
        return
    for index, effective_at in dated.items():
        if effective_at <= closed:
            results[index] = InvalidRequest(
                "period_closed",
                f"the period through {closed.isoformat()} is closed",
                field="effective_at",
            )
            del checked[index]


def _named_assets(request: TransactionRequest) -> set[str]:
    """The assets a request names that the insert does not check: both of an exchange's
    (422 `unknown_asset` for either), a journal's."""
    codes = set(request.named_assets())
    if request.type == TransactionType.EXCHANGE and request.asset_code is not None:
        codes.add(request.asset_code)
    return codes


def _insert_rows(conn: Connection, columns: dict[str, Any]) -> list[RowMapping]:
    """Run INSERT_TRANSACTIONS. Two batches naming the same new reference ids in opposite
    orders can deadlock on the unique index; PostgreSQL then aborts one of them, which runs
    again from a savepoint. A single row cannot deadlock (it waits on at most one other
    insert of its reference, and takes its wallets' locks in sorted order after that), so
    it spares the savepoint's round trips."""
    if len(columns["reference_ids"]) == 1:
        return list(conn.execute(INSERT_TRANSACTIONS, columns).mappings())

    def attempt() -> list[RowMapping]:
        with conn.begin_nested():
            return list(conn.execute(INSERT_TRANSACTIONS, columns).mappings())

    return retry_on_conflict(attempt, attempts=MAX_INTAKE_ATTEMPTS, backoff=INTAKE_BACKOFF_SECONDS)


def _key_is_live(conn: Connection, key_id: uuid.UUID) -> bool:
    return bool(conn.execute(KEY_IS_LIVE, {"key_id": key_id}).scalar_one())


def _replay(row: RowMapping, request: TransactionRequest, view: dict[str, Any]) -> Result:
    if row["request_hash"] != request.fingerprint():
        return IdempotencyKeyReused(
            f"reference_id {request.reference_id!r} was used for a different request",
            field="reference_id",
        )
    return Submission(view, replayed=True)


def _columns(
    tenant_id: uuid.UUID, requests: list[TransactionRequest], key_id: uuid.UUID | None
) -> dict[str, Any]:
    """INSERT_TRANSACTIONS' parameters: one array per column, in the requests' order, and
    the (reference, asset, owner) of every wallet a request credits."""
    wallets = [
        (request.reference_id, asset, owner)
        for request in requests
        for asset, owner in request.credited_wallets()
    ]
    return {
        "tenant_id": tenant_id,
        "key_id": key_id,
        "wallet_references": [reference for reference, _, _ in wallets],
        "wallet_assets": [asset for _, asset, _ in wallets],
        "wallet_owners": [owner for _, _, owner in wallets],
        "types": [r.type for r in requests],
        "reference_ids": [r.reference_id for r in requests],
        "request_hashes": [r.fingerprint() for r in requests],
        "asset_codes": [r.asset_code for r in requests],
        "amounts": [r.amount for r in requests],
        "user_ids": [r.user_id for r in requests],
        "to_user_ids": [r.to_user_id for r in requests],
        "original_transaction_ids": [r.original_transaction_id for r in requests],
        "payment_methods": [r.payment_method for r in requests],
        "bonus_types": [r.bonus_type for r in requests],
        "item_ids": [r.item_id for r in requests],
        "reasons": [r.reason for r in requests],
        "metadata": [json.dumps(r.metadata) for r in requests],
        "expires_ats": [r.expires_at for r in requests],
        "expires_ins": [r.expires_in_seconds() for r in requests],
        "splits": [_json_or_none(r.splits) for r in requests],
        "to_accounts": [r.to_account for r in requests],
        "payout_methods": [r.payout_method for r in requests],
        "destinations": [r.destination for r in requests],
        "to_asset_codes": [r.to_asset_code for r in requests],
        "to_amounts": [r.to_amount for r in requests],
        "postings": [_json_or_none(r.postings) for r in requests],
        "effective_ats": [r.effective_at for r in requests],
    }


def _json_or_none(value: object) -> str | None:
    return None if value is None else json.dumps(value)


def ensure_wallets(
    conn: Connection, tenant_id: uuid.UUID, wallets: Sequence[tuple[str, str]]
) -> None:
    """Create the (asset_code, owner) wallets that do not exist yet."""
    if not wallets:
        return
    keys = sorted(set(wallets))
    conn.execute(
        ENSURE_WALLETS,
        {
            "tenant_id": tenant_id,
            "asset_codes": [asset for asset, _ in keys],
            "owners": [owner for _, owner in keys],
        },
    )
