"""What a user id and a reference id may contain, and the same rule as a portable pattern.

A user id names a wallet in request bodies and in URL paths (`/wallets/{user_id}/...`, the
console's pages), so it must be one path segment that every client can spell and that no
reader can mistake for another id: no `/` (a server sees `%2F` decoded, as a separator), not
`.` or `..` (clients resolve those segments away), not a word the wallet routes spell
themselves (`POST /wallets/topup` is a submission, so no wallet can be `topup`), and none of
the invisible characters that make two different ids display alike (a soft hyphen, a
variation selector, a filler, a tag character, a second spelling of the same accented
letter). A reference id is only ever text in a body or a query, so it keeps its wider rule,
without the invisible ones that make two keys look alike.
docs/security.md#user-ids-and-reference-ids has the rule and its reasons.
"""

from __future__ import annotations

import bisect
import functools
import re
import sys
import unicodedata
from collections.abc import Iterable

from ledger.errors import InvalidRequest
from ledger.vocabulary import TransactionType

MAX_USER_ID = 128
MAX_REFERENCE_ID = 128
# `/wallets/<type>` submits a transaction of that type (api/routes/wallets.py), so a wallet
# of that name could not be changed at `/wallets/{user_id}`.
ROUTE_WORDS: tuple[str, ...] = (TransactionType.TOPUP, TransactionType.BONUS, TransactionType.SPEND)

# Default_Ignorable_Code_Point, from Unicode's DerivedCoreProperties.txt: code points a
# renderer shows as nothing, assigned or reserved for that.
DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Whitespace (Zs, Zl, Zp; Unicode's other White_Space code points are Cc), controls,
# format characters and surrogates.
REFUSED_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs"})

# Bidirectional controls and zero-width characters: the invisible ones a reference id refuses.
BIDI_CONTROLS: tuple[tuple[int, int], ...] = (
    (0x061C, 0x061C),
    (0x200E, 0x200F),
    (0x202A, 0x202E),
    (0x2066, 0x2069),
)
ZERO_WIDTH: tuple[tuple[int, int], ...] = ((0x200B, 0x200D), (0x2060, 0x2060), (0xFEFF, 0xFEFF))

_IGNORABLE_STARTS = [low for low, _ in DEFAULT_IGNORABLE]
# The fast paths (every submission checks two ids and a reference): ASCII can break the
# user-id rule only with a control, a space or `/`; a reference id only with what these
# tables list, which one compiled class finds.
_ASCII_REFUSED_IN_USER_ID = re.compile("[\x00-\x20\x7f/]")
_REFUSED_IN_REFERENCE_ID = re.compile(
    "["
    + "".join(
        f"{re.escape(chr(low))}-{re.escape(chr(high))}"
        for low, high in ((0, 0), (0xD800, 0xDFFF), *BIDI_CONTROLS, *ZERO_WIDTH)
    )
    + "]"
)


def _in_ranges(code_point: int, ranges: Iterable[tuple[int, int]]) -> bool:
    return any(low <= code_point <= high for low, high in ranges)


def is_default_ignorable(code_point: int) -> bool:
    index = bisect.bisect_right(_IGNORABLE_STARTS, code_point) - 1
    return index >= 0 and code_point <= DEFAULT_IGNORABLE[index][1]


def refused_in_user_id(character: str) -> bool:
    """Whether one code point may never appear in a user id (whitespace, control, format,
    surrogate, default-ignorable, or `/`)."""
    return (
        character == "/"
        or unicodedata.category(character) in REFUSED_CATEGORIES
        or is_default_ignorable(ord(character))
    )


def _named(character: str) -> str:
    name = unicodedata.name(character, "")
    return f"U+{ord(character):04X}" + (f" {name}" if name else "")


def user_id_fault(value: object) -> str | None:
    """Which rule a user id breaks, as the end of a sentence ("must ..."), or None."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_USER_ID:
        return f"must be 1-{MAX_USER_ID} characters"
    if value.startswith("@"):
        return "must not start with '@' (system accounts do)"
    if value in (".", ".."):
        return "must not be '.' or '..' (not addressable in a URL path)"
    if "/" in value:
        return "must not contain '/' (not addressable in a URL path)"
    if value in ROUTE_WORDS:
        return f"must not be one of {', '.join(ROUTE_WORDS)} (paths of the wallet routes)"
    if value.isascii() and not _ASCII_REFUSED_IN_USER_ID.search(value):
        return None  # ASCII is in NFC, and no other ASCII code point is refused
    for character in value:
        if refused_in_user_id(character):
            return (
                f"must not contain {_named(character)}: no whitespace, control, format or"
                " invisible (default-ignorable) characters"
            )
    # After the code points: NFC of text with a surrogate cannot be judged.
    if not unicodedata.is_normalized("NFC", value):
        return "must be in Unicode normalization form NFC (composed characters)"
    return None


def reference_id_fault(value: object) -> str | None:
    """Which rule a reference id breaks, as the end of a sentence ("must ..."), or None."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REFERENCE_ID:
        return f"must be 1-{MAX_REFERENCE_ID} characters"
    if not _REFUSED_IN_REFERENCE_ID.search(value):
        return None
    for character in value:
        code_point = ord(character)
        if code_point == 0 or 0xD800 <= code_point <= 0xDFFF:
            return "must not contain NUL characters or unpaired surrogates"
        if _in_ranges(code_point, BIDI_CONTROLS):
            return f"must not contain the bidirectional control {_named(character)}"
        if _in_ranges(code_point, ZERO_WIDTH):
            return f"must not contain the zero-width character {_named(character)}"
    return None


def check_user_id(value: object, name: str = "user_id") -> str:
    """A wallet owner's id, or InvalidRequest `invalid_user_id` saying which rule it breaks."""
    fault = user_id_fault(value)
    if fault is not None:
        raise InvalidRequest("invalid_user_id", f"{name} {fault}", field=name)
    assert isinstance(value, str)
    return value


def check_reference_id(value: object, name: str = "reference_id") -> str:
    """A client's idempotency key, or InvalidRequest saying which rule it breaks."""
    if value is None:
        raise InvalidRequest("missing_field", f"{name} is required", field=name)
    fault = reference_id_fault(value)
    if fault is not None:
        raise InvalidRequest("invalid_field", f"{name} {fault}", field=name)
    assert isinstance(value, str)
    return value


# --- the same rules for the OpenAPI document -------------------------------------------------


def _allowed_in_user_id() -> list[tuple[int, int]]:
    """The runs of code points a user id may contain, from the tables above; a run never
    crosses from the BMP to the astral planes (the pattern writes the two differently)."""
    refused = bytearray(
        category in REFUSED_CATEGORIES
        for category in map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    )
    refused[ord("/")] = True
    for low, high in DEFAULT_IGNORABLE:
        refused[low : high + 1] = b"\x01" * (high - low + 1)
    refused[0x10000:0x10000] = b"\x01"  # a boundary, removed from the offsets below
    runs = []
    for run in re.finditer(b"\x00+", refused):
        low, high = run.start(), run.end() - 1
        runs.append((low, high) if low <= 0xFFFF else (low - 1, high - 1))
    return runs


def _char(code_point: int) -> str:
    # ECMA-262 and Python agree on \uXXXX. Astral code points go in literally: `\u{...}`
    # is not portable, and a range between surrogate-pair escapes means something else.
    return f"\\u{code_point:04X}" if code_point <= 0xFFFF else chr(code_point)


def _class(ranges: Iterable[tuple[int, int]], *, negated: bool = False) -> str:
    parts = [_char(low) if low == high else f"{_char(low)}-{_char(high)}" for low, high in ranges]
    return "[" + ("^" if negated else "") + "".join(parts) + "]"


def _without(ranges: list[tuple[int, int]], code_point: int) -> list[tuple[int, int]]:
    kept: list[tuple[int, int]] = []
    for low, high in ranges:
        if low <= code_point <= high:
            kept += [(low, code_point - 1)] if low < code_point else []
            kept += [(code_point + 1, high)] if code_point < high else []
        else:
            kept.append((low, high))
    return kept


@functools.cache
def user_id_pattern() -> str:
    """A JSON Schema (ECMA-262, read with Unicode `u` semantics) pattern for the code points
    of a user id: the allowed ones listed (so surrogates are left out without naming them),
    never `.`, `..` or a word of ROUTE_WORDS, no leading `@`. Length and NFC are not in it
    (`minLength`, `maxLength`, the description)."""
    allowed = _allowed_in_user_id()
    first = _class(_without(allowed, ord("@")))
    # The group is for schemathesis, which folds minLength/maxLength into a bare quantifier
    # and writes astral code points back as Python-only `\U` escapes (then rejects its own
    # pattern); it leaves a capturing group of two items alone (a `(?:...)` it flattens).
    reserved = "".join(f"(?!{word}$)" for word in ROUTE_WORDS)
    return f"^(?!\\.\\.?$){reserved}({first}{_class(allowed)}*)$"


@functools.cache
def reference_id_pattern() -> str:
    """A JSON Schema (ECMA-262) pattern refusing NUL, bidirectional controls and zero-width
    characters in a reference id (unpaired surrogates are refused too, not in the pattern)."""
    refused = sorted([(0, 0), *BIDI_CONTROLS, *ZERO_WIDTH])
    return f"^{_class(refused, negated=True)}*$"


USER_ID_RULE = (
    f"1-{MAX_USER_ID} characters in Unicode NFC, not starting with `@`, not `.`, `..`,"
    f" {', '.join(f'`{word}`' for word in ROUTE_WORDS)},"
    " without `/`, whitespace, control, format or default-ignorable (invisible) characters."
)
REFERENCE_ID_RULE = (
    f"1-{MAX_REFERENCE_ID} characters, without NUL, bidirectional controls or zero-width"
    " characters."
)
