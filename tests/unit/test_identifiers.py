"""The user-id and reference-id rules (ledger/identifiers.py), and the OpenAPI pattern that
states the user-id rule: every look-alike code point refused, NFC required, every id one
addressable path segment, and the pattern agreeing with the validator code point by code point."""

from __future__ import annotations

import re
import sys
import unicodedata

import jsonschema_rs
import pytest

from ledger.errors import InvalidRequest
from ledger.identifiers import (
    check_reference_id,
    check_user_id,
    reference_id_fault,
    reference_id_pattern,
    user_id_fault,
    user_id_pattern,
)

# Restated from Unicode's DerivedCoreProperties.txt (Default_Ignorable_Code_Point), not
# read from the module under test.
DEFAULT_IGNORABLE = [
    0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810),
    *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070), 0x3164,
    *range(0xFE00, 0xFE10), 0xFEFF, 0xFFA0, *range(0xFFF0, 0xFFF9), *range(0x1BCA0, 0x1BCA4),
    *range(0x1D173, 0x1D17B), *range(0xE0000, 0xE1000),
]  # fmt: skip
# The probe's findings, each accepted before: every one must now be refused.
LOOK_ALIKES = [
    0x00AD, 0x061C, 0x034F, 0x3164, 0xFE0F, 0x180E, 0xFFF9, 0xE0001, 0xE0041, 0xE007F,
]  # fmt: skip
WHITESPACE = [
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
    0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
]  # fmt: skip
CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
FORMAT = [0x0600, 0x06DD, 0x070F, 0x08E2, 0x110BD, 0x13430, 0xFFFA, 0xFFFB, 0x2064]
SURROGATES = [0xD800, 0xDBFF, 0xDC00, 0xDFFF]

BIDI_CONTROLS = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
ZERO_WIDTH = [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]

ACCEPTED = [
    "alice9",
    "%61lice9",
    "%2F",
    "a%2Fb",
    "100%",
    "what?",
    "#tag",
    "a+b",
    "a.b",
    "...",
    ".hidden",
    "café",
    "名前",
    "Ωμέγα",
    "\U0001f600",
    "\u2800",  # braille blank: a visible symbol by category, shown empty
    "x" * 128,
    "\U0001f600" * 128,  # 128 code points, 512 UTF-8 bytes
]


def refused(value: str) -> bool:
    with pytest.raises(InvalidRequest) as refusal:
        check_user_id(value)
    assert refusal.value.code == "invalid_user_id"
    assert refusal.value.field == "user_id"
    return True


@pytest.mark.parametrize("value", ACCEPTED)
def test_a_visible_nfc_user_id_without_slash_is_accepted(value: str) -> None:
    assert check_user_id(value) == value


REFUSED_GROUPS = {
    "default-ignorable": DEFAULT_IGNORABLE,
    "look-alikes-found-by-the-probe": LOOK_ALIKES,
    "whitespace": WHITESPACE,
    "controls": CONTROLS,
    "format": FORMAT,
    "surrogates": SURROGATES,
}


@pytest.mark.parametrize("group", REFUSED_GROUPS)
def test_every_invisible_space_control_or_format_code_point_is_refused_in_a_user_id(
    group: str,
) -> None:
    for code_point in REFUSED_GROUPS[group]:
        character = chr(code_point)
        for value in (f"alice{character}", f"{character}alice", f"al{character}ice", character):
            assert user_id_fault(value) is not None, f"U+{code_point:04X} in {value!r}"
        assert refused(f"alice{character}")


def test_the_refusal_names_the_code_point() -> None:
    with pytest.raises(InvalidRequest) as refusal:
        check_user_id("alice\u00ad")
    assert "U+00AD" in refusal.value.message


def test_the_same_name_in_nfd_is_refused_and_in_nfc_accepted() -> None:
    nfc = unicodedata.normalize("NFC", "José-Ñuñez")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    assert check_user_id(nfc) == nfc
    assert refused(nfd)
    assert "NFC" in (user_id_fault(nfd) or "")


@pytest.mark.parametrize(
    "value", ["/", "a/b", "/alice", "alice/", ".", "..", "topup", "bonus", "spend"]
)
def test_a_user_id_that_is_not_one_path_segment_is_refused(value: str) -> None:
    assert refused(value)


@pytest.mark.parametrize("value", ["", "x" * 129, "@topup", "@"])
def test_an_empty_long_or_system_user_id_is_refused(value: str) -> None:
    assert refused(value)


@pytest.mark.parametrize("code_point", sorted({*BIDI_CONTROLS, *ZERO_WIDTH}))
def test_bidi_controls_and_zero_width_characters_are_refused_in_a_reference_id(
    code_point: int,
) -> None:
    with pytest.raises(InvalidRequest) as refusal:
        check_reference_id(f"order-{chr(code_point)}1")
    assert (refusal.value.code, refusal.value.field) == ("invalid_field", "reference_id")
    assert f"U+{code_point:04X}" in refusal.value.message


@pytest.mark.parametrize(
    "value", ["order 1", "order\t1", "a/b", "\u00e9", "e\u0301", "\U0001f600" * 128, "@x"]
)
def test_a_reference_id_keeps_its_wider_rule(value: str) -> None:
    assert check_reference_id(value) == value


@pytest.mark.parametrize("value", ["", "r" * 129, "r\x00", "r\ud800"])
def test_an_empty_long_or_unstorable_reference_id_is_refused(value: str) -> None:
    assert reference_id_fault(value) is not None


# --- the OpenAPI patterns -------------------------------------------------------------------

ECMA_ESCAPE = re.compile(r"\\(.)")


@pytest.mark.parametrize("pattern", [user_id_pattern(), reference_id_pattern()])
def test_the_patterns_are_portable_ecma_262(pattern: str) -> None:
    escapes = {match.group(1) for match in ECMA_ESCAPE.finditer(pattern)}
    assert escapes <= {"u", "."}, escapes  # no \x, \U, \s or \p: those differ between engines
    for escape in re.findall(r"\\u([0-9A-Fa-f]{4})", pattern):
        assert not 0xD800 <= int(escape, 16) <= 0xDFFF  # no surrogate escapes
    assert "\\u{" not in pattern
    assert all(ord(character) < 0xD800 or ord(character) > 0xDFFF for character in pattern)
    re.compile(pattern)


def test_the_user_id_pattern_agrees_with_the_validator_on_every_code_point() -> None:
    pattern = re.compile(user_id_pattern())
    disagree = []
    for code_point in range(sys.maxunicode + 1):
        value = f"a{chr(code_point)}"
        if 0xD800 <= code_point <= 0xDFFF:
            by_validator = False
        else:
            # NFC is the description's part of the rule: judge the code point alone.
            fault = user_id_fault(value)
            by_validator = fault is None or fault.startswith("must be in Unicode")
        if (pattern.fullmatch(value) is not None) != by_validator:
            disagree.append(f"U+{code_point:04X}")
    assert disagree == []


@pytest.mark.parametrize("value", [".", "..", "topup", "spend", "@a", "a/b", "", "a\u00ad"])
def test_the_user_id_pattern_refuses_what_is_not_a_segment(value: str) -> None:
    assert re.fullmatch(user_id_pattern(), value) is None


@pytest.mark.parametrize(
    "value", ["...", ".a", "a@", "%2e%2e", "\U0001f600", "\U000e1000", "topups", "Spend"]
)
def test_the_user_id_pattern_accepts_awkward_valid_ids(value: str) -> None:
    assert re.fullmatch(user_id_pattern(), value) is not None
    assert user_id_fault(value) is None


def test_the_reference_id_pattern_agrees_with_the_validator_on_the_bmp() -> None:
    pattern = re.compile(reference_id_pattern())
    for code_point in range(0x10000):
        if 0xD800 <= code_point <= 0xDFFF:
            continue  # refused by the validator; the pattern cannot name them portably
        value = f"r{chr(code_point)}"
        assert (pattern.fullmatch(value) is not None) == (reference_id_fault(value) is None), (
            f"U+{code_point:04X}"
        )


def test_an_ecma_262_validator_reads_the_documented_rule_as_the_validator_does() -> None:
    # jsonschema_rs (schemathesis's validator) runs patterns with an ECMA-262 engine.
    schema = {"type": "string", "pattern": user_id_pattern(), "minLength": 1, "maxLength": 128}
    documented = jsonschema_rs.validator_for(schema, validate_formats=True)
    samples = [
        *ACCEPTED, "", ".", "..", "topup", "@a", "a/b", "x" * 129, "\U0001f600" * 129, "a\u00ad",
        "a\U000e0041", "a\ufe0f", "a b", "a\u3164", "a\u200b", "\U0010ffff", "\U000e1000",
    ]  # fmt: skip
    for value in samples:
        assert documented.is_valid(value) == (user_id_fault(value) is None), repr(value)
