"""Keyset pages: how many rows a page may hold, and the opaque cursors that say where the
next page continues (each listing makes its own position text; clients never read it)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TypeVar

from ledger.errors import InvalidCursor

MAX_PAGE_SIZE = 200
# What `encode_cursor` writes: the URL-safe base64 alphabet, as a regex character class.
CURSOR_ALPHABET = "A-Za-z0-9_-"
T = TypeVar("T")


def page_size(limit: int) -> int:
    """A requested page size, held to 1..MAX_PAGE_SIZE."""
    return max(1, min(limit, MAX_PAGE_SIZE))


def encode_cursor(position: str) -> str:
    """The cursor of a position (URL-safe base64, unpadded)."""
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parse: Callable[[str], T]) -> T:
    """The position a cursor names, read by `parse` (which raises ValueError for text that
    is not a position of its listing); InvalidCursor for anything this API did not issue."""
    try:
        return parse(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("the cursor is not one this API returned", field="cursor") from None
