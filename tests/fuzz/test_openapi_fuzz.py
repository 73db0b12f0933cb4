"""schemathesis against the live app's OpenAPI document: every operation, with valid and
with bad keys. Any 5xx, any answer whose status, content type, headers or body the
document does not describe, fails the run; so does a schema-valid request the API refuses
(the document must state every rule the API enforces), a method the document does not
list that is not answered 405 with `Allow`, and an `OPTIONS` whose `Allow` differs from the
methods the document lists for the path.

Each operation runs its coverage cases (schemathesis's deterministic boundary values and
undocumented methods) and then generated valid and invalid cases.

Bodies that name a webhook URL get a public address literal instead of what was
generated: registration then needs no DNS, and no dispatcher runs here to send to it.
Run it alone with `bash scripts/test tests/fuzz` (TALLY_FUZZ_EXAMPLES sets the examples per
operation and key; CI runs the default).
"""

from __future__ import annotations

import os
import unicodedata

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

EXAMPLES = int(os.environ.get("TALLY_FUZZ_EXAMPLES", "30"))
PUBLIC_URL = "https://1.1.1.1/fuzzed"
# User ids must be in NFC, which the document states in words: no pattern can say it.
USER_ID_FIELDS = frozenset({"user_id", "to_user_id"})


# Refusals of schema-valid requests the document states in words, because JSON Schema
# cannot: a cursor this API never issued (as an unknown id is a 404), an expiry relative to
# now, two fields that must differ (wallets, assets, a posting's ends, a split's
# destinations), legs that must sum to the amount, and metadata's encoded size and NUL at any
# depth; a system account or asset the tenant does not have (as an unknown one is a 404);
# a statement period whose `from` is not before its `to`, a report's range out of order or
# too long, a close's `through` less than a minute ago; and an effective time outside a
# window relative to now or the tenant's closed periods.
UNSTATABLE_CODES = frozenset(
    {
        "invalid_cursor",
        "invalid_expiry",
        "same_wallet",
        "same_asset",
        "invalid_splits",
        "invalid_postings",
        "invalid_metadata",
        "metadata_too_large",
        "unknown_system_account",
        "unknown_asset",
        "invalid_period",
        "effective_at_in_future",
        "effective_at_too_old",
        "period_closed",
        "invalid_through",
        "invalid_range",
        "range_too_long",
        # A set of scopes (["hold", "hold"] is one item), keys that parse and fit an
        # algorithm, an origin's parts: checked in code.
        "invalid_scope",
        "invalid_jwks",
        "private_key_uploaded",
        "invalid_origin",
    }
)


def _problem(response: Response) -> dict:
    if response.status_code not in (400, 422):
        return {}
    problem = response.json()
    return problem if isinstance(problem, dict) else {}


def positive_data_is_accepted(ctx: CheckContext, response: Response, case: schemathesis.Case):
    """positive_data_acceptance, less the refusals above and of user ids not in NFC."""
    problem = _problem(response)
    if problem.get("code") in UNSTATABLE_CODES:
        return None
    refused = {"user_id"} if problem.get("code") == "invalid_user_id" else set()
    refused |= set(problem.get("errors") or {})
    if refused and refused <= USER_ID_FIELDS and _user_ids_not_in_nfc(case, problem):
        return None
    return positive_data_acceptance(ctx, response, case)


def _user_ids_not_in_nfc(case: schemathesis.Case, problem: dict) -> bool:
    """Whether a user id the request sent is not in NFC. The problem's `instance` is the path
    as the API decoded it: it settles a path id even when the case's own parameters (as a
    replayed or shrunk example holds them) do not show it."""
    values = [(case.path_parameters or {}).get("user_id"), problem.get("instance")]
    if isinstance(case.body, dict):
        values += [case.body.get(name) for name in USER_ID_FIELDS]
    return any(
        isinstance(value, str) and not unicodedata.is_normalized("NFC", value) for value in values
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_is_accepted,
    unsupported_method,
    allow_header_conformance,
]


def _call(case: schemathesis.Case, key: str) -> None:
    if isinstance(case.body, dict) and "url" in case.body:
        case.body["url"] = PUBLIC_URL
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    case.call_and_validate(headers=headers, checks=CHECKS)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def fuzz_every_operation(api_schema: schemathesis.BaseSchema, key_names: list[str], keys) -> int:
    """Run the coverage and generated cases of every operation with each named key; the
    operations run."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    for operation in operations:
        coverage = api_schema.iter_coverage_cases(
            operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=api_schema.config.generation_for(operation=operation),
        )
        for case in coverage:
            for name in key_names:
                try:
                    _call(case, keys.get(name, ""))
                except BaseException as error:
                    error.add_note(f"coverage case of {operation.label} with the {name} key")
                    raise

        # Valid requests, and requests that break the document on purpose.
        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        @FUZZ
        def fuzz(case: schemathesis.Case) -> None:
            for name in key_names:
                _call(case, keys.get(name, ""))

        try:
            fuzz()
        except BaseException as error:
            error.add_note(f"while fuzzing {operation.label}")
            raise
    return len(operations)


def test_with_an_admin_key_every_answer_is_documented(api_schema, keys):
    assert fuzz_every_operation(api_schema, ["admin"], keys) >= 25


def test_with_narrower_bad_or_no_keys_every_answer_is_documented(api_schema, keys):
    names = ["write", "read", "unknown", "malformed", "none"]
    assert fuzz_every_operation(api_schema, names, keys) >= 25
