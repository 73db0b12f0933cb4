"""History cursors: opaque to clients, and refused when they are not ones we handed out."""

from __future__ import annotations

import base64

import pytest

from ledger.errors import InvalidCursor
from ledger.queries import cursor_version, version_cursor
from ledger.rules import available_balance


def raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("version", [1, 2, 49, 10**6, 2**63 - 1])
def test_a_cursor_decodes_to_the_version_it_encodes(version):
    cursor = version_cursor(version)
    assert cursor_version(cursor) == version


def test_a_cursor_is_url_safe_without_padding():
    for version in range(1, 300):
        cursor = version_cursor(version)
        assert "=" not in cursor
        assert cursor.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "!!!!",
        "",
        "é",
        raw_cursor("v1:"),
        raw_cursor("v1:abc"),
        raw_cursor("v1:0"),
        raw_cursor("v1:-5"),
        raw_cursor("v2:5"),
        raw_cursor("5"),
        raw_cursor("v1:1.5"),
        # Past bigint: the database could not compare it, so it is not ours either.
        raw_cursor(f"v1:{2**63}"),
        raw_cursor("v1:" + "9" * 5000),
        base64.urlsafe_b64encode(b"\xff\xfe:1").decode(),
    ],
)
def test_a_cursor_we_did_not_issue_is_refused(cursor):
    with pytest.raises(InvalidCursor) as caught:
        cursor_version(cursor)
    assert caught.value.code == "invalid_cursor"
    assert caught.value.field == "cursor"


@pytest.mark.parametrize(
    ("balance", "pending", "credit_limit", "available"),
    [(100, 0, 0, 100), (100, 30, 0, 70), (-20, 0, 50, 30), (0, 10, 10, 0)],
)
def test_available_balance_is_balance_less_holds_plus_credit(
    balance, pending, credit_limit, available
):
    assert available_balance(balance, pending, credit_limit) == available
