"""`tally verify --chain`: the journal's hash chains and the seals recomputed from the
entries (docs/design.md#tamper-evidence). Entries are streamed, never all in memory.

What a break means: an entry whose stored hash is not SHA-256(its account's previous
chained hash ‖ its fields) was altered, or an entry before it was deleted (then the
versions between the two are reported missing; holds also skip versions, so a gap alone
is not a deletion). Entries without a hash (from before the chains, or the bench's seeded
history) are skipped by the chain, as the posting batch skips them; those after an
account's chain began are listed as a warning. The first break of each account is named;
its later entries are not judged, since they chain from a value the database no longer
holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, Row, TextClause, text

from ledger.chains import entry_hash, merkle_root
from ledger.verify import CheckResult, VerifyReport

STREAM_ROWS = 5_000
# Unhashed entries listed by name; beyond, only counted (seeded history has millions).
MAX_LISTED = 50

ENTRIES_BY_ACCOUNT = text(
    """
    SELECT id, tenant_id, transaction_id, account_id, amount, balance_after,
           account_version, effective_at, hash
    FROM entries
    WHERE CAST(:tenant_id AS uuid) IS NULL OR tenant_id = :tenant_id
    ORDER BY account_id, account_version
    """
)
# Accounts whose head is not the hash of their last chained entry.
HEADS = text(
    """
    SELECT a.id, a.tenant_id, a.last_hash, last.id AS entry_id, last.account_version,
           last.hash
    FROM accounts a
    LEFT JOIN LATERAL (
        SELECT id, account_version, hash FROM entries
        WHERE account_id = a.id AND hash IS NOT NULL
        ORDER BY account_version DESC LIMIT 1
    ) last ON true
    WHERE (CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id)
      AND a.last_hash IS DISTINCT FROM last.hash
    ORDER BY a.id
    """
)
SEALS = text(
    """
    SELECT id, tenant_id, entries_through, account_count, root FROM seals
    WHERE CAST(:tenant_id AS uuid) IS NULL OR tenant_id = :tenant_id
    ORDER BY tenant_id, entries_through, id
    """
)
SEALED_ENTRIES = text(
    """
    SELECT id, account_id, hash FROM entries
    WHERE tenant_id = :tenant_id AND hash IS NOT NULL AND id <= :through
    ORDER BY id
    """
)


@dataclass
class _Chain:
    account_id: int
    previous: bytes | None = None
    version: int | None = None
    broken: bool = False


def _stream(conn: Connection, query: TextClause, params: dict[str, object]) -> Iterator[Row]:
    # A server-side cursor, STREAM_ROWS rows at a time.
    result = conn.execute(query.execution_options(yield_per=STREAM_ROWS), params)
    yield from result


def check_entries(conn: Connection, tenant_id: uuid.UUID | None) -> tuple[CheckResult, CheckResult]:
    """Recompute every chained entry's hash, account by account, in version order; and
    list (a warning) the entries without a hash after their account's chain began."""
    check = CheckResult("every chained entry's hash chains it to its account's previous one")
    unchained = CheckResult(
        "entries without a hash after their account's chain began (not covered by it)",
        warning=True,
    )
    unhashed = 0
    chain = _Chain(-1)
    for row in _stream(conn, ENTRIES_BY_ACCOUNT, {"tenant_id": tenant_id}):
        if row.account_id != chain.account_id:
            chain = _Chain(row.account_id)
        if chain.broken:
            continue
        subject = f"entry {row.id} (account {row.account_id}, transaction {row.transaction_id})"
        stored = bytes(row.hash) if row.hash is not None else None
        if stored is None:
            # Seeded history (ledger/history_seed.py) or an entry someone added: the chain
            # skips it, as the posting batch does. Stripping a chained entry's hash breaks
            # the chain at the next chained entry, or at the account's head.
            if chain.previous is not None:
                unhashed += 1
                if unhashed <= MAX_LISTED:
                    unchained.violations.append((subject, "has no hash"))
            chain.version = row.account_version
            continue
        expected = entry_hash(
            chain.previous,
            row.tenant_id,
            row.transaction_id,
            row.account_id,
            int(row.amount),
            int(row.balance_after),
            row.account_version,
            row.effective_at,
        )
        if expected != stored:
            chain.broken = True
            check.violations.append((subject, _break(chain, row.account_version)))
        chain.previous, chain.version = stored, row.account_version
    if unhashed > MAX_LISTED:
        unchained.violations.append((f"and {unhashed - MAX_LISTED} more", "without a hash"))
    return check, unchained


def _break(chain: _Chain, version: int) -> str:
    before = chain.version or 0
    if version > before + 1:
        missing = (
            f"version {before + 1}"
            if version == before + 2
            else (f"versions {before + 1} to {version - 1}")
        )
        return (
            f"hash does not recompute: account {chain.account_id} {missing} missing"
            " (an entry deleted) or this entry altered"
        )
    return "hash does not recompute: this entry was altered"


def check_heads(conn: Connection, tenant_id: uuid.UUID | None) -> CheckResult:
    """Each account's `last_hash` is the hash of its last chained entry."""
    check = CheckResult("each account's chain head is its last chained entry's hash")
    for row in conn.execute(HEADS, {"tenant_id": tenant_id}):
        if row.entry_id is None:
            detail = "has a chain head but no chained entry"
        else:
            detail = (
                f"chain head differs from the hash of its last entry {row.entry_id} (version"
                f" {row.account_version}): an entry after it deleted, or the head altered"
            )
        check.violations.append((f"account {row.id}", detail))
    return check


def check_seals(conn: Connection, tenant_id: uuid.UUID | None) -> CheckResult:
    """Recompute each seal's root from the entries' hashes as of its `entries_through`."""
    check = CheckResult("every seal's root recomputes from the entries it covers")
    by_tenant: dict[uuid.UUID, list[Row]] = {}
    for seal in conn.execute(SEALS, {"tenant_id": tenant_id}):
        by_tenant.setdefault(seal.tenant_id, []).append(seal)
    for tenant, seals in by_tenant.items():
        heads: dict[int, bytes] = {}
        through = {"tenant_id": tenant, "through": seals[-1].entries_through}
        due = 0
        for row in _stream(conn, SEALED_ENTRIES, through):
            while due < len(seals) and row.id > seals[due].entries_through:
                _compare(check, seals[due], heads)
                due += 1
            heads[row.account_id] = bytes(row.hash)
        for seal in seals[due:]:
            _compare(check, seal, heads)
    return check


def _compare(check: CheckResult, seal: Row, heads: dict[int, bytes]) -> None:
    root = merkle_root(heads[account] for account in sorted(heads))
    subject = f"seal {seal.id} (tenant {seal.tenant_id}, entries through {seal.entries_through})"
    if root != bytes(seal.root):
        check.violations.append(
            (subject, f"root {bytes(seal.root).hex()} recomputes as {root.hex()}")
        )
    elif seal.account_count != len(heads):
        check.violations.append(
            (subject, f"{seal.account_count} accounts, recomputed {len(heads)}")
        )


def verify_chains(conn: Connection, tenant_id: uuid.UUID | None = None) -> VerifyReport:
    """Every chain check; a report naming the first break of each account, each wrong
    head and each seal that does not recompute. Runs without the statement timeout."""
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    return VerifyReport(
        [
            *check_entries(conn, tenant_id),
            check_heads(conn, tenant_id),
            check_seals(conn, tenant_id),
        ]
    )
