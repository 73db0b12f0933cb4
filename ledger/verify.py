"""The invariants of the ledger (docs/design.md#invariants), checked against a live database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

# Every snapshot beside the entries of its account, in effective order, the snapshot after
# the entries of its own moment: at a snapshot row, `total`, `entries` and `last_recorded`
# are the sum, count and latest recording time of the entries effective through it.
SNAPSHOT_STREAM = """
    WITH snapshots AS (
        SELECT * FROM balance_snapshots
        WHERE CAST(:tenant_id AS uuid) IS NULL OR tenant_id = :tenant_id
    ), stream AS (
        SELECT e.account_id, e.effective_at AS at, 0 AS is_snapshot, e.amount,
               e.created_at, NULL AS kind, NULL::numeric AS balance,
               NULL::bigint AS entry_count, NULL::timestamptz AS recorded_through
        FROM entries e WHERE e.account_id IN (SELECT account_id FROM snapshots)
        UNION ALL
        SELECT account_id, effective_through, 1, 0, NULL, kind, balance, entry_count,
               recorded_through
        FROM snapshots
    ), running AS (
        SELECT *, sum(amount) OVER w AS total, count(created_at) OVER w AS entries,
               max(created_at) OVER w AS last_recorded
        FROM stream
        WINDOW w AS (PARTITION BY account_id ORDER BY at, is_snapshot ROWS UNBOUNDED PRECEDING)
    )
"""

# Each check is a query returning one row per violation: (subject, detail).
# `:tenant_id` NULL checks every tenant.
CHECKS: list[tuple[str, str]] = [
    (
        "applied transactions balance to zero in each asset",
        """
        SELECT e.transaction_id::text, a.asset_code || ' entries sum to ' || sum(e.amount)
        FROM entries e JOIN accounts a ON a.id = e.account_id
        WHERE CAST(:tenant_id AS uuid) IS NULL OR e.tenant_id = :tenant_id
        GROUP BY e.transaction_id, a.asset_code HAVING sum(e.amount) <> 0
        """,
    ),
    (
        "applied transactions have their entries (two, one more per leg, four for an"
        " exchange, two per posting; holds and voids none), others none",
        """
        SELECT t.id::text, t.status || ' with ' || count(e.id) || ' entries'
        FROM transactions t LEFT JOIN entries e ON e.transaction_id = t.id
        WHERE CAST(:tenant_id AS uuid) IS NULL OR t.tenant_id = :tenant_id
        GROUP BY t.id, t.status
        HAVING (t.status = 'applied' AND count(e.id) <> CASE
                    WHEN t.type IN ('hold', 'void') THEN 0
                    WHEN t.type = 'exchange' THEN 4
                    WHEN t.type = 'journal' THEN 2 * jsonb_array_length(t.postings)
                    WHEN t.splits IS NOT NULL THEN 1 + jsonb_array_length(t.splits)
                    ELSE 2 END)
            OR (t.status <> 'applied' AND count(e.id) > 0)
        """,
    ),
    (
        "entries stay within their transaction's tenant and assets",
        """
        SELECT e.id::text, 'entry of ' || t.id || ' on account ' || a.id
        FROM entries e
        JOIN transactions t ON t.id = e.transaction_id
        JOIN accounts a ON a.id = e.account_id
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR e.tenant_id = :tenant_id)
          AND (a.tenant_id <> t.tenant_id OR e.tenant_id <> t.tenant_id
               OR (a.asset_code IS DISTINCT FROM t.asset_code
                   AND a.asset_code IS DISTINCT FROM t.to_asset_code
                   AND NOT a.asset_code IN (
                       SELECT p ->> 'asset_code'
                       FROM jsonb_array_elements(coalesce(t.postings, '[]')) AS p)))
        """,
    ),
    (
        "the legs of an applied transaction sum to its amount",
        """
        SELECT t.id::text, 'legs sum to ' || sum((leg ->> 'amount')::numeric)
                           || ' of ' || t.amount
        FROM transactions t CROSS JOIN LATERAL jsonb_array_elements(t.splits) AS leg
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR t.tenant_id = :tenant_id)
          AND t.status = 'applied'
        GROUP BY t.id, t.amount HAVING sum((leg ->> 'amount')::numeric) <> t.amount
        """,
    ),
    (
        "no leg gave back in refunds more than it received",
        """
        SELECT g.original_id::text,
               'leg ' || g.owner || ' gave back ' || g.back || ' of ' || coalesce(l.amount, 0)
        FROM (
            SELECT r.original_transaction_id AS original_id,
                   coalesce(leg ->> 'to_user_id', leg ->> 'to_account') AS owner,
                   sum((leg ->> 'amount')::numeric) AS back
            FROM transactions r CROSS JOIN LATERAL jsonb_array_elements(r.splits) AS leg
            WHERE (CAST(:tenant_id AS uuid) IS NULL OR r.tenant_id = :tenant_id)
              AND r.type = 'refund' AND r.status = 'applied'
            GROUP BY 1, 2
        ) g
        JOIN transactions o ON o.id = g.original_id
        LEFT JOIN LATERAL (
            SELECT (leg ->> 'amount')::numeric AS amount
            FROM jsonb_array_elements(coalesce(o.splits, jsonb_build_array(jsonb_build_object(
                'to_account', coalesce(o.to_user_id, o.to_account, '@revenue'),
                'amount', o.amount)))) AS leg
            WHERE coalesce(leg ->> 'to_user_id', leg ->> 'to_account') = g.owner
        ) l ON true
        WHERE g.back > coalesce(l.amount, 0)
        """,
    ),
    (
        "stored balances equal the sum of their entries",
        """
        SELECT 'account ' || a.id || ' (' || a.owner || ' ' || a.asset_code || ')',
               'stored ' || a.balance || ', entries sum to ' || coalesce(s.total, 0)
        FROM accounts a
        LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id) s
          ON s.account_id = a.id
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id)
          AND a.balance <> coalesce(s.total, 0)
        """,
    ),
    (
        "each account's last entry shows its stored balance",
        """
        SELECT 'account ' || a.id || ' (' || a.owner || ' ' || a.asset_code || ')',
               'stored ' || a.balance || ', last balance_after ' || last.balance_after
        FROM accounts a
        JOIN LATERAL (
            SELECT balance_after FROM entries WHERE account_id = a.id
            ORDER BY account_version DESC LIMIT 1
        ) last ON true
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id)
          AND a.balance <> last.balance_after
        """,
    ),
    (
        "balances of each tenant and asset sum to zero",
        """
        SELECT a.tenant_id || ' ' || a.asset_code, 'balances sum to ' || sum(a.balance)
        FROM accounts a
        WHERE CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id
        GROUP BY a.tenant_id, a.asset_code HAVING sum(a.balance) <> 0
        """,
    ),
    (
        "no wallet is below its credit limit",
        """
        SELECT 'account ' || a.id || ' (' || a.owner || ' ' || a.asset_code || ')',
               'balance ' || a.balance || ' below -' || a.credit_limit
        FROM accounts a
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id)
          AND NOT a.is_system AND a.balance < -a.credit_limit
        """,
    ),
    (
        "no journal line took a wallet below its credit limit",
        """
        SELECT 'entry ' || e.id, 'balance_after ' || e.balance_after || ' on ' || a.owner
        FROM (
            SELECT e.*, count(*) OVER (
                PARTITION BY e.account_id ORDER BY e.account_version DESC
            ) - 1 AS later_entries
            FROM entries e
            WHERE CAST(:tenant_id AS uuid) IS NULL OR e.tenant_id = :tenant_id
        ) e
        JOIN accounts a ON a.id = e.account_id
        WHERE NOT a.is_system AND e.balance_after < -a.credit_limit
          -- Only lines written under today's limit: wallet administration bumps the
          -- version without an entry, and a limit lowered after a debt was repaid must
          -- not turn that legal debt into a violation.
          AND a.version - e.account_version = e.later_entries
        """,
    ),
    (
        "one transaction per reference id",
        """
        SELECT tenant_id || ' ' || reference_id, count(*) || ' transactions'
        FROM transactions
        WHERE CAST(:tenant_id AS uuid) IS NULL OR tenant_id = :tenant_id
        GROUP BY tenant_id, reference_id HAVING count(*) > 1
        """,
    ),
    (
        "refunds never exceed their spend or capture",
        """
        SELECT s.id::text, 'refunded ' || sum(r.amount) || ' of ' || s.amount
        FROM transactions r JOIN transactions s ON s.id = r.original_transaction_id
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR r.tenant_id = :tenant_id)
          AND r.status = 'applied'
        GROUP BY s.id, s.amount HAVING sum(r.amount) > s.amount
        """,
    ),
    (
        "every wallet's pending equals the sum of its held holds",
        """
        SELECT 'account ' || a.id || ' (' || a.owner || ' ' || a.asset_code || ')',
               'pending ' || a.pending || ', held holds sum to ' || coalesce(h.total, 0)
        FROM accounts a
        LEFT JOIN (
            SELECT account_id, sum(amount) AS total FROM holds WHERE status = 'held'
            GROUP BY account_id
        ) h ON h.account_id = a.id
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR a.tenant_id = :tenant_id)
          AND a.pending <> coalesce(h.total, 0)
        """,
    ),
    (
        "captures stay within their hold and settle it",
        """
        SELECT 'hold ' || h.transaction_id,
               'captured ' || coalesce(c.amount::text, 'nothing') || ' by ' || h.captured_by
               || ' of ' || h.amount
        FROM holds h LEFT JOIN transactions c ON c.id = h.captured_by
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR h.tenant_id = :tenant_id)
          AND h.status = 'captured'
          AND (c.status IS DISTINCT FROM 'applied' OR c.amount > h.amount
               OR c.amount IS DISTINCT FROM h.captured_amount)
        """,
    ),
    (
        "every applied capture or void released its hold",
        """
        SELECT t.id::text, t.type || ' of hold ' || t.original_transaction_id
        FROM transactions t LEFT JOIN holds h ON h.transaction_id = t.original_transaction_id
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR t.tenant_id = :tenant_id)
          AND t.type IN ('capture', 'void') AND t.status = 'applied'
          AND (h.transaction_id IS NULL
               OR t.id IS DISTINCT FROM coalesce(h.captured_by, h.voided_by))
        """,
    ),
    *(
        # Ledger time (docs/design.md#ledger-time): the snapshots every as-of read starts from.
        # Both read SNAPSHOT_STREAM: one ordered pass over the entries of accounts with
        # snapshots, not a sum per snapshot (a million entries under a thousand checkpoints
        # would be summed a thousand times).
        (
            "balance snapshots equal the sum of the entries effective through them",
            f"""
            {SNAPSHOT_STREAM}
            SELECT 'snapshot ' || kind || ' of account ' || account_id || ' through ' || at,
                   'balance ' || balance || ' of ' || entry_count || ' entries, entries sum to '
                   || coalesce(total, 0) || ' of ' || entries
            FROM running
            WHERE is_snapshot = 1 AND (balance <> coalesce(total, 0) OR entry_count <> entries)
            """,
        ),
        (
            "no entry effective within a balance snapshot was recorded after it",
            f"""
            {SNAPSHOT_STREAM}
            SELECT 'snapshot ' || kind || ' of account ' || account_id || ' through ' || at,
                   'an entry effective within it was recorded ' || last_recorded
                   || ', after ' || recorded_through
            FROM running
            WHERE is_snapshot = 1 AND last_recorded > recorded_through
            """,
        ),
        (
            "nothing was recorded into a closed period",
            """
            SELECT 'close ' || p.id || ' through ' || p.through,
                   'entry ' || e.id || ' effective ' || e.effective_at || ' recorded '
                   || e.created_at
            FROM period_closes p
            JOIN entries e ON e.tenant_id = p.tenant_id
             AND e.effective_at <= p.through AND e.created_at > p.closed_at
            WHERE CAST(:tenant_id AS uuid) IS NULL OR p.tenant_id = :tenant_id
            """,
        ),
        (
            "each tenant is closed through its latest close, which snapshots every account it"
            " covers",
            """
            SELECT 'tenant ' || t.id,
                   'closed through ' || coalesce(t.closed_through::text, 'nothing')
                   || ', latest close ' || coalesce(p.through::text, 'none')
                   || ', ' || coalesce(p.missing, 0) || ' accounts without its snapshot'
            FROM tenants t
            LEFT JOIN LATERAL (
                SELECT c.through, (
                    SELECT count(*) FROM accounts a
                    WHERE a.tenant_id = t.id
                      AND EXISTS (
                          SELECT 1 FROM entries e
                          WHERE e.account_id = a.id AND e.effective_at <= c.through)
                      AND NOT EXISTS (
                          SELECT 1 FROM balance_snapshots s
                          WHERE s.account_id = a.id AND s.kind = 'close'
                            AND s.effective_through = c.through)
                ) AS missing
                FROM period_closes c WHERE c.tenant_id = t.id
                ORDER BY c.through DESC LIMIT 1
            ) p ON true
            WHERE (CAST(:tenant_id AS uuid) IS NULL OR t.id = :tenant_id)
              AND (t.closed_through IS DISTINCT FROM p.through OR p.missing > 0)
            """,
        ),
    ),
]

# The sweeper releases due holds every relay interval; past this margin a held hold is
# overdue. Reported, never failed: the sweeper may simply not be running.
OVERDUE_MARGIN_SECONDS = 60
WARNINGS: list[tuple[str, str]] = [
    (
        "no hold is held long past its expiry (is the relay's sweeper running?)",
        f"""
        SELECT 'hold ' || transaction_id, 'expired at ' || expires_at
        FROM holds
        WHERE (CAST(:tenant_id AS uuid) IS NULL OR tenant_id = :tenant_id)
          AND status = 'held'
          AND expires_at < now() - make_interval(secs => {OVERDUE_MARGIN_SECONDS})
        """,
    ),
]


@dataclass
class CheckResult:
    name: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    # A warning reports its rows but does not make the ledger inconsistent.
    warning: bool = False

    @property
    def ok(self) -> bool:
        return self.warning or not self.violations


@dataclass
class VerifyReport:
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def lines(self) -> list[str]:
        out = []
        for check in self.checks:
            mark = "ok  " if not check.violations else "WARN" if check.warning else "FAIL"
            out.append(f"{mark} {check.name}")
            out.extend(f"       {subject}: {detail}" for subject, detail in check.violations[:50])
            if len(check.violations) > 50:
                out.append(f"       ... and {len(check.violations) - 50} more")
        return out


def verify_ledger(conn: Connection, tenant_id: uuid.UUID | None = None) -> VerifyReport:
    """Run every invariant check; a report naming each violating row. Checking reads the
    whole ledger: it runs without the connection's statement timeout."""
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    results = []
    for checks, warning in ((CHECKS, False), (WARNINGS, True)):
        for name, query in checks:
            rows = conn.execute(text(query), {"tenant_id": tenant_id}).all()
            results.append(CheckResult(name, [(str(a), str(b)) for a, b in rows], warning))
    return VerifyReport(results)
